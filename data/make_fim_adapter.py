"""Train the shipped FIM adapter: Gemma 3 270M + LoRA learns to fill in the middle (lesson 06's defaults).

    python data/make_fim_adapter.py        # writes data/gemma3_270m_fim.lora.safetensors

The same recipe as lesson 06 at its default parameters: the ``stdlib_functions`` training records in
the FIM format, suffix-prefix-middle order, with Gemma 3's reserved pieces as markers
(``fim.GEMMA3_FIM_MARKERS``), the loss on the middle and the end marker (``tuning.fim_data``), LoRA on
the attention projections, AdamW, greedy evaluation before and after on two held-out sets of functions
(any answerable line; a line that repeats its neighbour's pattern). The adapter's header records the
markers and the order, so ``tuning.load_adapter`` makes ``model.complete(before, after)`` work on the
base model. The shipped
file stores the LoRA matrices in float16 (``shrink``): 1.5 MB instead of 3.0 MB; ``load_adapter``
casts them back to the model's float32 variables.
"""

import argparse
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RANK, TARGETS, LEARNING_RATE, ORDER = 8, ("query", "key", "value", "attention_output"), 1e-3, "spm"
BATCH_SIZE, TRAIN_STEPS = 4, 80
SEQUENCE_LENGTH, RESPONSE_LENGTH = 192, 32
EVAL_EXAMPLES, MAX_NEW_TOKENS = 48, 24


def fitting(model, records, markers, limit=None):
    from gemma_kit.tuning.fim_data import fits_fim
    kept = [r for r in records if fits_fim(model.tokenizer, r, markers, SEQUENCE_LENGTH, RESPONSE_LENGTH, ORDER)]
    return kept[:limit] if limit else kept


def scores(model, records, batch_size=16):
    """(exact-match hits, parse hits, completions) of greedy middles for ``records``: lesson 06's ``score``."""
    from gemma_kit import evaluate

    completions = []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        completions += model.complete([r["prefix"] for r in chunk], [r["suffix"] for r in chunk],
                                      max_new_tokens=MAX_NEW_TOKENS)
    _, exact = evaluate.exact_match_rate(completions, [r["middle"] for r in records])
    parsed = [evaluate.parses(r["prefix"], c, r["suffix"]) for r, c in zip(records, completions)]
    return sum(exact), sum(parsed), completions


def shrink(path):
    """Rewrite an adapter file with float16 tensors (half the bytes), keeping its metadata header."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(path, framework="np") as f:
        metadata, tensors = f.metadata(), {name: f.get_tensor(name).astype("float16") for name in f.keys()}
    save_file(tensors, path, metadata=metadata)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=TRAIN_STEPS)
    parser.add_argument("--rank", type=int, default=RANK)
    parser.add_argument("--lr", type=float, default=LEARNING_RATE)
    parser.add_argument("--out", default=os.path.join(HERE, "gemma3_270m_fim.lora.safetensors"))
    args = parser.parse_args()
    import gemma_kit
    from gemma_kit import fim, tuning
    from gemma_kit.tuning.fim_data import format_fim_examples

    t0 = time.perf_counter()
    model = gemma_kit.load("gemma3_270m")
    markers = fim.enable_fim(model, order=ORDER)
    train = fitting(model, gemma_kit.data.load("stdlib_functions", "train"), markers)
    tests = {split: fitting(model, gemma_kit.data.load("stdlib_functions", split), markers, EVAL_EXAMPLES)
             for split in ("test", "pattern")}
    data = format_fim_examples(model.tokenizer, train, markers, SEQUENCE_LENGTH, RESPONSE_LENGTH, ORDER)
    for split, test in tests.items():
        t = time.perf_counter()
        exact0, parsed0, _ = scores(model, test)
        print(f"before, {split}: exact {exact0}/{len(test)}, parses {parsed0}/{len(test)} "
              f"({time.perf_counter() - t:.0f} s)")
    tuning.enable_lora(model, rank=args.rank, targets=TARGETS)
    trainer = tuning.compile_for_training(tuning.ResponseLM(model.backbone), args.lr)
    batches = tuning.TrainingBatches(data, BATCH_SIZE, steps_per_epoch=args.steps, seed=0)
    history = tuning.LossHistory()
    t = time.perf_counter()
    trainer.fit(batches, epochs=1, shuffle=False, verbose=2, callbacks=[batches.epoch_callback, history])
    print(f"{args.steps} steps in {time.perf_counter() - t:.0f} s; loss {history.losses[0]:.2f} -> "
          f"{sum(history.losses[-10:]) / 10:.2f} (mean of the last 10)")
    for split, test in tests.items():
        t = time.perf_counter()
        exact1, parsed1, completions = scores(model, test)
        print(f"after, {split}: exact {exact1}/{len(test)}, parses {parsed1}/{len(test)} "
              f"({time.perf_counter() - t:.0f} s)")
        for r, c in list(zip(test, completions))[:4]:
            print(f"  expected {r['middle']!r}\n  got      {c!r}")
    path = shrink(tuning.save_adapter(model, args.out))
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB) in {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
