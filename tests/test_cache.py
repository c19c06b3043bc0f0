"""One cache protocol for every family: a chunk of any length, at any time, appended to a live cache.

``backbone.extend(token_ids, time, start, caches)`` is prefill (a chunk at time 0) and decode (a chunk of
one token) at once. Here chunks of 1 to 12 tokens, at times known only when they run, are appended one
after another; each must give the logits a full forward pass over the whole sequence gives. The tiny
models have short windows (8 for Gemma's local layers, 6 for Griffin's attention) so the chunks wrap the
ring buffers and some are longer than them.
"""

import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit.models.griffin import GriffinConfig, griffin_block_types
from gemma_kit.nn import cache_bytes
from conftest import randomize, tiny_gemma3_config

CHUNKS = [5, 3, 12, 1]                       # 21 tokens: the first chunk is the prompt at time 0


def _tiny(family):
    if family == "gemma3":
        return randomize(gemma_kit.GemmaBackbone(tiny_gemma3_config()), seed=3)
    config = GriffinConfig(vocab_size=320, width=32, mlp_expanded_width=64, num_heads=4, lru_width=48,
                           block_types=griffin_block_types(5), attention_window_size=6, name="tiny_griffin")
    return randomize(gemma_kit.GriffinBackbone(config), seed=3, scale=0.3)


@pytest.mark.parametrize("family", ["gemma3", "griffin"])
def test_chunks_appended_to_a_live_cache_match_the_full_forward_pass(family, padding=3):
    backbone = _tiny(family)
    ids = np.random.default_rng(0).integers(4, 320, size=sum(CHUNKS)).astype(np.int32)
    full = np.asarray(ops.convert_to_numpy(backbone(ids[None])))[0]                    # (seq, vocab)
    padded = np.concatenate([np.zeros(padding, np.int32), ids])                        # left padding, as generate does
    start = np.full(1, padding, np.int32)
    caches = backbone.init_cache(1, 64)
    time, end = 0, padding + CHUNKS[0]
    logits, caches = backbone.prefill(padded[None, :end], start, caches)
    np.testing.assert_allclose(ops.convert_to_numpy(logits)[0], full[CHUNKS[0] - 1], atol=1e-4, rtol=1e-4)
    for size in CHUNKS[1:]:
        time, end = end, end + size
        logits, caches = backbone.extend(padded[None, time:end], ops.convert_to_tensor(np.int32(time)), start,
                                         caches)
        np.testing.assert_allclose(ops.convert_to_numpy(logits)[0], full[end - padding - 1], atol=1e-4, rtol=1e-4,
                                   err_msg=f"a chunk of {size} tokens at time {time}")


def test_cache_bytes_is_one_function_for_every_family():
    gemma, griffin = _tiny("gemma3"), _tiny("griffin")
    c = gemma.config                 # 5 local layers keep the window (8), 1 global layer every step
    assert cache_bytes(gemma.init_cache(2, 100)) == 2 * 2 * c.num_kv_heads * c.head_dim * 4 * (5 * 8 + 100)
    g = griffin.config               # R R A R R: 1 attention block keeps a ring of the window, one KV head
    recurrent = 2 * (48 * 4 + 3 * 48 * 4)                      # 4 recurrent blocks: state + 3 conv inputs, float32
    assert cache_bytes(griffin.init_cache(2, 100)) == 2 * 2 * g.head_dim * 4 * 6 + 4 * recurrent
    assert cache_bytes(griffin.init_cache(2, 10_000)) == cache_bytes(griffin.init_cache(2, 100))   # fixed size
