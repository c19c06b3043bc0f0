"""The KV cache and the sampling loop, on tiny random models of each Gemma generation.

A cache is only an optimisation: with it, every step must give the logits a
full forward pass over the whole sequence gives. The tiny models have a
sliding window of 8 so that prompts and continuations wrap the ring buffer.
"""

import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit.models.gemma.config import gemma2_layer_types
from gemma_kit.generate import Generator
from conftest import randomize, tiny_gemma3_config

VARIANTS = {
    "gemma1_mqa": dict(layer_types=(), sliding_window=None, use_post_norms=False, use_qk_norm=False,
                       num_kv_heads=1, rope_base_global=10_000.0),
    "gemma2": dict(layer_types=gemma2_layer_types(6), attn_soft_cap=50.0, final_soft_cap=30.0, use_qk_norm=False,
                   rope_base_global=10_000.0, query_pre_attn_scalar=12.0),
    "gemma3": {},
}


def _backbone(variant, seed=0):
    # Weights ~ N(0, 0.4): at 0.5 the Gemma 1 variant (no post norms, no QK-norm) grows activations until
    # float32 rounding alone reaches 1e-4 on TensorFlow, whatever the cache does (measured: 1.17e-4 with the
    # old write-then-read cache, 1.20e-4 with read-then-write; at 0.4: 2.5e-5 and 2.4e-5).
    return randomize(gemma_kit.GemmaBackbone(tiny_gemma3_config(**VARIANTS[variant])), seed=seed, scale=0.4)


def _full_logits(backbone, ids):
    return np.asarray(ops.convert_to_numpy(backbone(np.asarray([ids], np.int32))))[0]   # (seq, vocab)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("prompt_len", [5, 21])          # shorter and longer than the window of 8
def test_cached_steps_match_full_forward(variant, prompt_len):
    backbone = _backbone(variant)
    rng = np.random.default_rng(prompt_len)
    ids = rng.integers(4, 320, size=prompt_len + 12).tolist()
    full = _full_logits(backbone, ids)

    caches = backbone.init_cache(1, 48)
    if backbone.config.sliding_window:
        local = [c[0].shape[1] for c, t in zip(caches, backbone.config.layer_types) if t == "local"]
        assert set(local) <= {backbone.config.sliding_window}         # local layers keep only the window
    logits, caches = backbone.prefill(np.asarray([ids[:prompt_len]], np.int32), np.zeros(1, np.int32), caches)
    np.testing.assert_allclose(ops.convert_to_numpy(logits)[0], full[prompt_len - 1], atol=1e-4, rtol=1e-4)
    for t in range(prompt_len, len(ids)):                                # 12 steps wrap the ring buffer
        logits, caches = backbone.decode(np.asarray([[ids[t]]], np.int32), t, np.zeros(1, np.int32), caches)
        np.testing.assert_allclose(ops.convert_to_numpy(logits)[0], full[t], atol=1e-4, rtol=1e-4,
                                   err_msg=f"decode step at time {t}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_greedy_with_and_without_cache_agree(variant):
    generator = Generator(_backbone(variant, seed=1))
    prompts = [[2, 17, 33, 81, 9, 250, 12, 7, 99, 5, 3, 44], [2, 100, 101]]
    cached = np.stack(list(generator.tokens(prompts, 20)))
    uncached = np.stack(list(generator.tokens(prompts, 20, use_cache=False)))
    np.testing.assert_array_equal(cached, uncached)


def test_batch_of_different_lengths_equals_one_by_one():
    generator = Generator(_backbone("gemma3", seed=2))
    prompts = [[2, 5, 6, 7], [2] + list(range(10, 40)), [2, 250]]
    batch = np.stack(list(generator.tokens(prompts, 15)))             # (steps, batch)
    for row, prompt in enumerate(prompts):
        alone = np.stack(list(generator.tokens([prompt], 15)))[:, 0]
        np.testing.assert_array_equal(batch[:, row], alone, err_msg=f"prompt {row}")


def _tiny_griffin(seed):
    from gemma_kit.models.griffin import GriffinConfig
    config = GriffinConfig(vocab_size=320, width=32, mlp_expanded_width=64, num_heads=4, lru_width=48,
                           block_types=("recurrent", "attention", "recurrent"), attention_window_size=6,
                           name="tiny_griffin")
    return randomize(gemma_kit.GriffinBackbone(config, random_init=False), seed=seed, scale=0.3)


@pytest.mark.parametrize("family", ["gemma3", "griffin"])
def test_chunked_prefill_gives_the_same_tokens(family):
    """A 38-token and a 5-token prompt (left-padded to 64) read in chunks of 16, then 12 steps,
    greedy and sampled: the same ids as one prefill pass (the window-8/6 rings wrap inside it)."""
    generator = Generator(_backbone("gemma3", seed=3) if family == "gemma3" else _tiny_griffin(seed=3))
    prompts = [[2] + list(range(10, 47)), [2, 5, 6, 7, 8]]
    for sampling in (dict(sampler="temperature", temperature=1.0, seed=4),):   # sampled: sensitive to logits
        whole = np.stack(list(generator.tokens(prompts, 12, **sampling)))              # (steps, batch)
        chunked = np.stack(list(generator.tokens(prompts, 12, prefill_chunk=16, **sampling)))
        np.testing.assert_array_equal(chunked, whole, err_msg=str(sampling))


@pytest.mark.parametrize("chunk", [0, 24, 2.0, True])
def test_a_bad_prefill_chunk_is_named(chunk):
    generator = Generator(_backbone("gemma3"))
    with pytest.raises(ValueError, match="prefill_chunk must be None or a power of two"):
        next(generator.tokens([[2, 3]], 4, prefill_chunk=chunk))


def test_stop_tokens_freeze_finished_rows():
    generator = Generator(_backbone("gemma3", seed=3))
    prompt = [2, 11, 12, 13]
    free = np.stack(list(generator.tokens([prompt], 10)))[:, 0]
    stop = int(free[3])
    first = int(np.argmax(free == stop))                                # the first time `stop` appears
    stopped = np.stack(list(generator.tokens([prompt], 10, stop_ids=[stop])))[:, 0]
    assert len(stopped) == first + 1 and stopped[-1] == stop
    np.testing.assert_array_equal(stopped, free[:first + 1])


def test_samplers_are_seeded_and_filter_correctly():
    generator = Generator(_backbone("gemma3", seed=4))
    prompt = [[2, 40, 41, 42]]
    run = lambda **kw: np.stack(list(generator.tokens(prompt, 12, **kw)))[:, 0]   # noqa: E731
    greedy = run()
    for sampler in ("temperature", "top_k", "top_p"):
        a, b = run(sampler=sampler, seed=7), run(sampler=sampler, seed=7)
        np.testing.assert_array_equal(a, b, err_msg=f"{sampler} is not reproducible with a seed")
    assert not np.array_equal(run(sampler="temperature", seed=1, temperature=5.0),
                              run(sampler="temperature", seed=2, temperature=5.0))
    np.testing.assert_array_equal(run(sampler="top_k", top_k=1, seed=3), greedy)       # k=1 is greedy
    np.testing.assert_array_equal(run(sampler="top_p", top_p=1e-6, seed=3), greedy)    # tiny nucleus = argmax
    np.testing.assert_array_equal(run(sampler="temperature", temperature=1e-4, seed=3), greedy)


def test_top_k_samples_only_among_the_k_most_likely():
    from gemma_kit.sampling import gumbel_noise, sample
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 50)).astype("float32")
    top3 = np.argsort(-logits, axis=-1)[:, :3]
    for _ in range(20):
        picks = ops.convert_to_numpy(sample(logits, "top_k", 1.0, 3, None, gumbel_noise(rng, 4, 50)))
        assert all(p in row for p, row in zip(picks, top3))


@pytest.mark.parametrize("kwargs, message", [
    (dict(sampler="beam"), "Unknown sampler"),
    (dict(sampler="temperature", temperature=0.0), "temperature"),
    (dict(sampler="top_k", top_k=0), "top_k"),
    (dict(sampler="top_p", top_p=1.5), "top_p"),
])
def test_bad_sampler_arguments_are_named(kwargs, message):
    generator = Generator(_backbone("gemma3"))
    with pytest.raises(ValueError, match=message):
        next(generator.tokens([[2, 3]], 4, **kwargs))
