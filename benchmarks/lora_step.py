"""LoRA training speed and memory: gemma_kit against keras-hub, Gemma 3 270M, one run.

    python benchmarks/lora_step.py [--batch-size 4] [--sequence-length 160] [--steps 5] [--rank 4]
                                   [--systems gemma_kit keras_hub gemma_kit_full_logits]

Every system trains LoRA rank ``--rank`` on the query and value projections of the real
Gemma 3 270M (the same float32 weights: keras-hub's ``Gemma3CausalLM`` is built from
gemma_kit's, ``gemma_kit.export.keras_hub.keras_hub_causal_lm``), on the same batch: the
first ``--batch-size`` training examples of ``data/stdlib_fim_train.jsonl`` in Gemma's chat
format, padded to ``--sequence-length``, loss on the answer tokens only, AdamW, JAX.

- ``gemma_kit``: ``tuning.enable_lora`` + ``tuning.ResponseLM`` (the output layer runs at the
  answer positions only) + ``tuning.compile_for_training``;
- ``keras_hub``: ``causal_lm.backbone.enable_lora(rank)`` (its default targets: query and
  value), compiled with the same AdamW and loss, trained on full-length targets and weights;
- ``gemma_kit_full_logits``: gemma_kit's backbone trained the same way as keras-hub (logits
  for every position), to show what ``ResponseLM`` alone is worth;
- ``gemma_kit_int8`` (not in the default list): ``gemma_kit`` on an int8 base
  (``tuning.quantize_base``, QLoRA-style); it also prints the weights' bytes before and after.

Each system runs in its own child process: load, compile with 2 untimed steps, then reset
the process's peak memory (``/proc/self/clear_refs``) and time ``--steps`` calls of
``train_on_batch``. Tokens/s counts every position of the padded batch
(batch x sequence length) per step for all systems; peak memory is the child's VmHWM
during the timed steps (weights, optimizer state, activations, compiled program).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                  # 5: reset the peak resident set size


def batch(tokenizer, args, response_only):
    from gemma_kit import tuning
    examples = tuning.load_jsonl(os.path.join(ROOT, "data", "stdlib_fim_train.jsonl"))
    examples = [e for i, e in enumerate(examples) if tuning.fits(tokenizer, e, args.sequence_length, 32)]
    data = tuning.format_examples(tokenizer, examples[:args.batch_size], args.sequence_length,
                                  32 if response_only else None)
    return data["x"], data["y"], data["sample_weight"]


def child(system, args, preset):
    from gemma_kit import tuning
    import gemma_kit

    model = gemma_kit.load("gemma3_270m")
    if system == "keras_hub":
        import keras_hub
        tokenizer = model.tokenizer
        del model
        causal_lm = keras_hub.models.Gemma3CausalLM.from_preset(preset)
        causal_lm.preprocessor = None                            # the batch is already token ids
        causal_lm.backbone.enable_lora(args.rank)
        trainable = sum(int(v.numpy().size) for v in causal_lm.backbone.trainable_weights)
        trainer = causal_lm
        tuning.compile_for_training(trainer, 1e-3)                # the same AdamW and loss
        x, y, w = batch(tokenizer, args, response_only=False)
    else:
        weights_before = tuning.weight_bytes(model)
        if system == "gemma_kit_int8":
            tuning.quantize_base(model)
        counts = tuning.enable_lora(model, rank=args.rank, targets=("query", "value"), verbose=False)
        trainable = counts["trainable"]
        print(f"[{system}] weights: {weights_before / 2**20:.0f} MiB float32 -> "
              f"{tuning.weight_bytes(model) / 2**20:.0f} MiB with LoRA", flush=True)
        response_only = system in ("gemma_kit", "gemma_kit_int8")
        trainer = tuning.ResponseLM(model.backbone) if response_only else model.backbone
        tuning.compile_for_training(trainer, 1e-3)
        x, y, w = batch(model.tokenizer, args, response_only)
    start = time.perf_counter()
    for _ in range(2):
        first_loss = float(trainer.train_on_batch(x, y, sample_weight=w, return_dict=True)["loss"])
    compile_s = time.perf_counter() - start
    reset_peak()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = float(trainer.train_on_batch(x, y, sample_weight=w, return_dict=True)["loss"])
        times.append(time.perf_counter() - start)
    step = min(times)
    print("RESULT " + json.dumps({
        "system": system, "trainable": trainable, "compile_s": compile_s, "step_s": step,
        "tokens_per_s": args.batch_size * args.sequence_length / step, "peak_mb": peak_rss_mb(),
        "first_loss": first_loss, "last_loss": loss, "load": os.getloadavg()[0]}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--sequence-length", type=int, default=160)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--systems", nargs="+", default=["gemma_kit", "keras_hub", "gemma_kit_full_logits"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args, args.preset)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        preset = os.path.join(tmp, "preset")
        if "keras_hub" in args.systems:          # keras-hub's model, with gemma_kit's weights, as its own preset
            subprocess.run([sys.executable, "-c", "import gemma_kit; gemma_kit.load('gemma3_270m')"
                            f".save_preset({preset!r})"], check=True)
        for system in args.systems:
            print(f"[{system}] running...", flush=True)
            out = subprocess.run([sys.executable, __file__, "--child", system, "--preset", preset,
                                  "--batch-size", str(args.batch_size), "--sequence-length",
                                  str(args.sequence_length), "--steps", str(args.steps), "--rank", str(args.rank)],
                                 capture_output=True, text=True)
            print("\n".join(line for line in out.stdout.splitlines() if line.startswith(f"[{system}]")))
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
            if out.returncode or not lines:
                sys.exit(f"[{system}] failed:\n{out.stderr[-3000:]}")
            results[system] = json.loads(lines[-1][len("RESULT "):])

    print(f"\nLoRA rank {args.rank} (query, value), batch {args.batch_size} x {args.sequence_length} tokens, "
          f"float32, backend {os.environ['KERAS_BACKEND']}, {args.steps} timed steps (best)")
    print(f"{'system':24s} {'trainable':>10s} {'compile s':>10s} {'step s':>8s} {'tokens/s':>9s} "
          f"{'peak MB':>8s} {'loss 1st->last':>15s} {'load':>5s}")
    for name, r in results.items():
        print(f"{name:24s} {r['trainable']:>10,d} {r['compile_s']:>10.1f} {r['step_s']:>8.2f} "
              f"{r['tokens_per_s']:>9.0f} {r['peak_mb']:>8.0f} {r['first_loss']:>7.3f}->{r['last_loss']:<7.3f} "
              f"{r['load']:>5.1f}")
    ours, theirs = results.get("gemma_kit"), results.get("keras_hub")
    if ours and theirs:
        speed = ours["tokens_per_s"] / theirs["tokens_per_s"]
        memory = ours["peak_mb"] / theirs["peak_mb"]
        print(f"\ngemma_kit / keras-hub: tokens/s x{speed:.2f}, peak memory x{memory:.2f}")
        print(f"target (tokens/s >= keras-hub at no more memory): "
              f"{'PASS' if speed >= 1.0 and memory <= 1.0 else 'MISS'}")


if __name__ == "__main__":
    main()
