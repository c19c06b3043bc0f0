"""The ``gemma-kit`` command line.

    gemma-kit generate "The capital of France is" --max-new-tokens 32
    gemma-kit info gemma3_270m
    gemma-kit serve --model gemma3_270m --port 8080

``generate`` streams the continuation to stdout as it is produced. ``info``
prints a model's configuration and parameter count without allocating weights.
``serve`` runs the HTTP server of ``gemma_kit/serving`` (Vertex AI's container contract).
Bad arguments end with a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys


def _build_parser() -> argparse.ArgumentParser:
    from .sampling import SAMPLERS

    parser = argparse.ArgumentParser(prog="gemma-kit", description="Gemma models in readable Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="continue a prompt, streaming the text")
    gen.add_argument("prompt")
    gen.add_argument("--model", default="gemma3_270m", help="a known model name or a checkpoint path")
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--sampler", default="greedy", choices=SAMPLERS)
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--dtype", default=None, help="e.g. float32 (default) or bfloat16")

    info = commands.add_parser("info", help="configuration and parameter count, without loading weights")
    info.add_argument("model")

    # `serve` has its own flags (gemma_kit/serving/settings.py): main() hands it the rest of the line, so
    # `generate` and `info` never import the web server.
    commands.add_parser("serve", help="an HTTP server for predictions (Vertex AI's container contract); "
                        "gemma-kit serve --help lists its flags", add_help=False)
    return parser


def _generate(args) -> int:
    import gemma_kit
    from .sampling import check_sampler

    # Check everything the user typed before spending seconds loading weights.
    if not args.prompt:
        raise ValueError("The prompt is empty: give at least one character of text")
    if args.max_new_tokens <= 0:
        raise ValueError(f"--max-new-tokens must be a positive integer, got {args.max_new_tokens}")
    top_k, top_p = check_sampler(args.sampler, args.temperature, args.top_k, args.top_p)

    model = gemma_kit.load(args.model, dtype=args.dtype)
    for piece in model.stream(args.prompt, max_new_tokens=args.max_new_tokens, sampler=args.sampler,
                              temperature=args.temperature, top_k=top_k, top_p=top_p, seed=args.seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


# One letter per layer kind, for the layer pattern of any family.
LAYER_LETTERS = {"local": ("L", "local"), "global": ("G", "global"), "recurrent": ("R", "recurrent"),
                 "attention": ("A", "local attention")}


def _pattern(kinds) -> str:
    """("local", "local", "global") -> "LLG  (L = local, G = global)"."""
    legend = ", ".join(f"{LAYER_LETTERS[k][0]} = {LAYER_LETTERS[k][1]}" for k in dict.fromkeys(kinds))
    return "".join(LAYER_LETTERS[k][0] for k in kinds) + f"  ({legend})"


def _info(args) -> int:
    from .loaders import read_config
    from .presets import PRESETS

    config = read_config(args.model)
    width = max(len(k) for k in config.to_dict())
    for key, value in config.to_dict().items():
        print(f"{key:<{width}}  {_pattern(value) if key in ('layer_types', 'block_types') else value}")
    print(f"{'parameters':<{width}}  {config.num_parameters():,}")
    if hasattr(config, "effective_parameters"):       # Gemma 4: without the PLE table; with the chosen experts
        print(f"{'effective':<{width}}  {config.effective_parameters():,}  (without the per-layer embeddings)")
        print(f"{'active':<{width}}  {config.active_parameters():,}  (the weights one token computes with)")
    if args.model in PRESETS:
        preset = PRESETS[args.model]
        print(f"{'official':<{width}}  {preset.official_parameters:,}  ({preset.official_source})")
        print(f"{'kaggle':<{width}}  {preset.kaggle_handle}\n{'hugging face':<{width}}  {preset.hf_repo}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        from .serving.server import main as serve
        return serve(argv[1:], prog="gemma-kit serve")
    args = _build_parser().parse_args(argv)
    try:
        return {"generate": _generate, "info": _info}[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
        print(f"gemma-kit: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
