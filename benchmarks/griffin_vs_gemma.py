"""Decode speed and cache memory against sequence position: Griffin (RecurrentGemma) vs Gemma.

    python benchmarks/griffin_vs_gemma.py [--positions 256 1024 4096] [--steps 16] [--rounds 5]
                                          [--width 768] [--blocks 12] [--gemma-kv-heads 12]

Two models of the same width and depth, about 100M parameters each (counts printed):

- Griffin: ``GriffinConfig`` with RecurrentGemma's block pattern (recurrent,
  recurrent, local attention), MLP 3 x width, lru_width = width, MQA local
  attention over a window of 2,048 tokens.
- Gemma: **Gemma-1-like, every layer global**, multi-head attention
  (``num_kv_heads = num_query_heads`` by default, as in Gemma 7B). A global
  layer caches every token it has seen, so its cache and the attention work of
  one decode step grow linearly with the position: all-global MHA is the plain
  transformer baseline Griffin was designed against. (Gemma-3-like models keep
  only 1 layer in 6 global and Gemma 2B uses one KV head: both grow more slowly;
  try ``--gemma-kv-heads 1``.) Its MLP width is chosen so the parameter counts
  are within a few percent.

Both use random weights (``random_init=True``; speed does not depend on the
values), float32, batch 1, greedy, vocabulary 32,768 (a 256,000-entry
vocabulary would put most parameters in the embedding).

For each position P: ``init_cache``, prefill a random prompt of P tokens with
``Generator.prefill`` (the compiled prefill that ``gemma_kit.generate.Generator``
runs), and 2 untimed ``Generator.decode`` steps (compilation for this cache
shape). Then ``--rounds`` rounds visit the positions in turn, each timing
``--steps`` decode steps per position (each fetching the sampled id to the host
as the generation loop does); a position's rate is its median round. Visiting
the positions in turn matters on a shared machine: measured one after the
other, a change of load lands on one position and reads as a slowdown with
length. Cache bytes: ``gemma_kit.nn.cache_bytes``
(the sum of every cache tensor's size), for both models.
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

VOCAB = 32_768
WINDOW = 2048
EXTRA = 64          # cache slots beyond the prompt


def configs(width, blocks, gemma_kv_heads):
    from gemma_kit import GemmaConfig
    from gemma_kit.models.griffin import GriffinConfig, griffin_block_types

    head_dim = 64
    heads = width // head_dim
    griffin = GriffinConfig(vocab_size=VOCAB, width=width, mlp_expanded_width=3 * width, num_heads=heads,
                            lru_width=width, block_types=griffin_block_types(blocks),
                            attention_window_size=WINDOW, name="griffin")

    def gemma(intermediate):
        return GemmaConfig(vocab_size=VOCAB, hidden_dim=width, num_layers=blocks, num_query_heads=heads,
                           num_kv_heads=gemma_kv_heads, head_dim=head_dim, intermediate_dim=intermediate,
                           name="gemma")
    # The Gemma MLP width (a multiple of 128) whose parameter count is closest to Griffin's.
    target = griffin.num_parameters()
    best = min(range(128, 8 * width + 1, 128), key=lambda f: abs(gemma(f).num_parameters() - target))
    return griffin, gemma(best)


def measure(backbone, positions, steps, rounds=5, seed=0):
    """Decode tokens/s at each position: the median of ``rounds`` timed runs of ``steps`` steps.

    Every position is prefilled first; then the rounds visit the positions in turn, so a change
    in the machine's load during the run touches every position alike instead of one of them.
    """
    from keras import ops

    from gemma_kit.generate import Generator
    from gemma_kit.nn import cache_bytes

    generator = Generator(backbone)
    greedy = dict(temperature=ops.convert_to_tensor(np.float32(1.0)), top_p=ops.convert_to_tensor(np.float32(1.0)),
                  sampler="greedy", top_k=None)
    rng = np.random.default_rng(seed)
    start = ops.convert_to_tensor(np.zeros(1, np.int32))

    def step(state):
        ids, t, caches = state
        ids, caches = generator.decode(ops.convert_to_tensor(ids[:, None]),
                                        ops.convert_to_tensor(np.int32(t)), start, caches, None, **greedy)
        return np.asarray(ops.convert_to_numpy(ids), np.int32), t + 1, caches

    states, rows = {}, {}
    for position in positions:
        caches = backbone.init_cache(1, position + EXTRA + rounds * steps)
        size = cache_bytes(caches)
        prompt = rng.integers(1, backbone.config.vocab_size, (1, position)).astype(np.int32)
        t0 = time.perf_counter()
        ids, caches = generator.prefill(ops.convert_to_tensor(prompt), start, caches, None, **greedy)
        ids = np.asarray(ops.convert_to_numpy(ids), np.int32)
        prefill_s = time.perf_counter() - t0            # compilation included
        state = (ids, position, caches)
        for _ in range(2):                              # compile for this cache shape, warm up
            state = step(state)
        states[position] = state
        rows[position] = dict(position=position, cache=size, prefill=prefill_s, times=[])
    for _ in range(rounds):
        for position in positions:
            t0 = time.perf_counter()
            for _ in range(steps):
                states[position] = step(states[position])
            rows[position]["times"].append(time.perf_counter() - t0)
    for row in rows.values():
        row["rate"] = steps / float(np.median(row.pop("times")))
        print(f"[{backbone.config.name}] position {row['position']}: {row['rate']:.1f} tok/s (median of {rounds}), "
              f"cache {row['cache'] / 2**20:.2f} MiB, prefill+compile {row['prefill']:.1f} s", flush=True)
    del states
    return list(rows.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, nargs="+", default=[256, 1024, 4096],
                        help="prompt lengths to decode after (the first and last are used by the targets)")
    parser.add_argument("--steps", type=int, default=16, help="timed decode steps per position and round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds over all positions (the median counts)")
    parser.add_argument("--width", type=int, default=768, help="model width of both models (a multiple of 64)")
    parser.add_argument("--blocks", type=int, default=12, help="residual blocks / decoder layers of both models")
    parser.add_argument("--gemma-kv-heads", type=int, default=None,
                        help="Gemma's KV heads (default: width / 64, multi-head; 1 = multi-query like Gemma 2B)")
    args = parser.parse_args()
    positions = sorted(set(args.positions))
    heads = args.width // 64

    import keras
    from gemma_kit import GemmaBackbone
    from gemma_kit.models.griffin import GriffinBackbone

    keras.config.set_floatx("float32")
    griffin_config, gemma_config = configs(args.width, args.blocks, args.gemma_kv_heads or heads)
    n_griffin, n_gemma = griffin_config.num_parameters(), gemma_config.num_parameters()
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    print(f"Griffin: {n_griffin / 1e6:.1f}M parameters (width {args.width}, {args.blocks} blocks "
          f"{''.join(t[0].upper() for t in griffin_config.block_types)}, MLP {griffin_config.mlp_expanded_width}, "
          f"{heads} heads, MQA window {WINDOW})")
    print(f"Gemma:   {n_gemma / 1e6:.1f}M parameters (width {args.width}, {args.blocks} global layers, "
          f"MLP {gemma_config.intermediate_dim}, {heads} query heads, {gemma_config.num_kv_heads} KV heads)")
    print(f"Gemma / Griffin parameters: {n_gemma / n_griffin:.3f}; vocab {VOCAB}, random weights, float32, "
          f"batch 1, greedy, {args.rounds} rounds of {args.steps} timed steps per position\n", flush=True)

    results = {}
    for name, cls, config in (("Griffin", GriffinBackbone, griffin_config), ("Gemma", GemmaBackbone, gemma_config)):
        backbone = cls(config, dtype="float32", random_init=True)
        assert backbone.count_params() == config.num_parameters(), (backbone.count_params(), config.num_parameters())
        results[name] = measure(backbone, positions, args.steps, args.rounds)
        del backbone
        keras.backend.clear_session()

    g, m = results["Griffin"], results["Gemma"]
    print("\n| position | Griffin tok/s | Gemma tok/s | Griffin / Gemma | Griffin cache MiB | Gemma cache MiB "
          "| Gemma / Griffin cache |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for a, b in zip(g, m):
        print(f"| {a['position']:,} | {a['rate']:.1f} | {b['rate']:.1f} | {a['rate'] / b['rate']:.2f}x "
              f"| {a['cache'] / 2**20:.2f} | {b['cache'] / 2**20:.2f} | {b['cache'] / a['cache']:.2f}x |")
    first, last = positions[0], positions[-1]
    keep = g[-1]["rate"] / g[0]["rate"]
    gemma_keep = m[-1]["rate"] / m[0]["rate"]
    print(f"\nrate at {last:,} / rate at {first:,}: Griffin {keep:.2f}, Gemma {gemma_keep:.2f}")
    print(f"cache growth {first:,} -> {last:,}: Griffin {g[-1]['cache'] / g[0]['cache']:.2f}x, "
          f"Gemma {m[-1]['cache'] / m[0]['cache']:.2f}x")
    targets = [(f"Griffin rate at {last:,} >= 0.9x its rate at {first:,}", keep, lambda v: v >= 0.9),
               (f"Griffin rate at {last:,} >= 2x Gemma's at {last:,}", g[-1]["rate"] / m[-1]["rate"],
                lambda v: v >= 2.0)]
    print("\n| target | measured | |\n| --- | --- | --- |")
    for label, value, ok in targets:
        print(f"| {label} | {value:.2f}x | {'PASS' if ok(value) else 'MISS'} |")
    print(f"\nload average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
