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

    # serve: every flag defaults to None so that AIP_* / GEMMA_KIT_* variables decide (serving/settings.py).
    serve = commands.add_parser("serve", help="an HTTP server for predictions (Vertex AI's container contract)")
    serve.add_argument("--model", default=None, help="a source for gemma_kit.load (default: $AIP_STORAGE_URI, "
                       "$GEMMA_KIT_MODEL, then gemma3_270m)")
    serve.add_argument("--port", type=int, default=None, help="default: $AIP_HTTP_PORT or 8080")
    serve.add_argument("--host", default=None, help="default: 0.0.0.0")
    serve.add_argument("--lora", default=None, help="a LoRA adapter file to load before serving")
    serve.add_argument("--dtype", default=None)
    serve.add_argument("--max-batch", type=int, default=None, help="rows per generation call; 1 = no batching")
    serve.add_argument("--max-wait-ms", type=float, default=None, help="how long a batch waits to fill")
    serve.add_argument("--max-queue", type=int, default=None, help="queued instances before answering 503")
    serve.add_argument("--max-instances", type=int, default=None, help="instances per request")
    serve.add_argument("--max-tokens", type=int, default=None, help="the largest max_tokens a request may ask")
    serve.add_argument("--max-prompt-tokens", type=int, default=None)
    serve.add_argument("--warmup", default=None, choices=("all", "1", "none"),
                       help="compile every batch size before turning healthy (all), only batch 1, or none")
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


def _info(args) -> int:
    from . import read_config

    config = read_config(args.model)
    width = max(len(k) for k in config.to_dict())
    for key, value in config.to_dict().items():
        if key == "layer_types":
            value = "".join("L" if t == "local" else "G" for t in value) + "  (L = local, G = global)"
        elif key == "block_types":                                            # RecurrentGemma
            value = "".join("R" if t == "recurrent" else "A" for t in value) + "  (R = recurrent, A = local attention)"
        print(f"{key:<{width}}  {value}")
    print(f"{'parameters':<{width}}  {config.num_parameters():,}")
    from .presets import PRESETS
    if args.model in PRESETS:
        preset = PRESETS[args.model]
        print(f"{'official':<{width}}  {preset.official_parameters:,}  (keras-hub preset metadata)")
        print(f"{'kaggle':<{width}}  {preset.kaggle_handle}\n{'hugging face':<{width}}  {preset.hf_repo}")
    return 0


def _serve(args) -> int:
    from .serving import Settings, run

    flags = {k: v for k, v in vars(args).items() if k != "command"}
    return run(Settings.from_env(**flags))


def main(argv=None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        return {"generate": _generate, "info": _info, "serve": _serve}[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
        print(f"gemma-kit: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
