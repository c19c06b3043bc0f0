"""Griffin's local attention block: multi-query attention over a sliding window.

    q = rope_half(x @ W_q)          # (batch, seq, num_heads, head_dim), head_dim = width / num_heads
    k = rope_half(x @ W_k)          # (batch, seq, head_dim): ONE key head shared by all query heads (MQA)
    v = x @ W_v                     # (batch, seq, head_dim)
    out = softmax(q . k / sqrt(head_dim) + mask) . v  @ W_final + b_final

Details that differ from Gemma's attention:
- RoPE rotates only the *first half* of each head (``rotary_dim = head_dim / 2``);
  the second half carries no position.
- The window: a query at time ``t`` sees keys ``t - window ... t``, that is
  ``window + 1`` keys (the official ``_compute_causal_mask`` tests
  ``q <= k + window``). transformers' port sees only ``window``; we follow the
  official code.
- Only the output projection has a bias.

The generation cache is a *ring buffer* of the last ``window`` keys and values,
(batch, window, head_dim) each: time step ``t`` lives in slot ``t % window``. A
decoding step attends to the ``window`` cached keys plus its own (``window + 1``
keys), then overwrites the oldest slot with its key. Memory stays constant
however long the generation runs.

Names follow ``recurrentgemma/jax/modules.py`` (``LocalAttentionBlock``, ``proj_q``, ...).
"""

import keras
from keras import ops

from ..layers.attention import MASKED
from ..layers.rotary import apply_rope


def fill_ring_buffer(cache, fresh):
    """A cache (batch, slots, head_dim) holding the last ``slots`` steps of ``fresh`` (batch, seq, head_dim).

    ``fresh`` starts at time 0, so time step ``t`` goes to slot ``t % slots``.
    """
    slots, seq = cache.shape[1], fresh.shape[1]
    fresh = ops.cast(fresh, cache.dtype)
    if seq >= slots:                     # keep the last `slots` steps; step seq - slots goes to slot seq % slots
        return ops.roll(fresh[:, seq - slots:], seq % slots, axis=1)
    return ops.slice_update(ops.zeros_like(cache), [0, 0, 0], fresh)


@keras.saving.register_keras_serializable(package="gemma_kit")
class LocalAttentionBlock(keras.layers.Layer):
    def __init__(self, width: int, num_heads: int, window_size: int, kernel_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        self.width, self.num_heads, self.window_size = width, num_heads, window_size
        self.head_dim = width // num_heads
        dense = dict(kernel_initializer=kernel_initializer, dtype=self.dtype_policy)
        self.proj_q = keras.layers.Dense(width, use_bias=False, name="proj_q", **dense)
        self.proj_k = keras.layers.Dense(self.head_dim, use_bias=False, name="proj_k", **dense)
        self.proj_v = keras.layers.Dense(self.head_dim, use_bias=False, name="proj_v", **dense)
        self.proj_final = keras.layers.Dense(width, use_bias=True, name="proj_final", **dense)

    def build(self, input_shape):                              # (batch, seq, width)
        for layer in (self.proj_q, self.proj_k, self.proj_v, self.proj_final):
            layer.build(input_shape)

    def call(self, x, positions, mask, cache=None, time=None, return_probs=False):
        """x: (batch, seq, width); positions: (batch, seq) int, what RoPE sees.

        mask: (batch, seq, keys) bool, True where a query may see a key; the keys are
        this call's own (a prompt), or the cache slots then the new token (one decoding step).
        cache: None or ``(keys, values)`` (batch, slots, head_dim); time: the decoding step's time.
        Returns ``(output, new_cache)``, plus the float32 attention probabilities
        (batch, num_heads, seq, keys), exact zeros where masked, when ``return_probs``.
        """
        batch, seq = ops.shape(x)[0], x.shape[1]
        half = self.head_dim // 2
        q = ops.reshape(self.proj_q(x), (batch, seq, self.num_heads, self.head_dim))
        q = apply_rope(q, positions, rotary_dim=half)                          # (batch, seq, heads, head_dim)
        k = ops.reshape(self.proj_k(x), (batch, seq, 1, self.head_dim))
        k = apply_rope(k, positions, rotary_dim=half)[:, :, 0]                 # (batch, seq, head_dim)
        v = self.proj_v(x)                                                     # (batch, seq, head_dim)

        keys, values, new_cache = k, v, None
        if cache is not None and seq == 1:                 # decoding: cached keys, then our own
            cache_k, cache_v = cache
            keys = ops.concatenate([cache_k, ops.cast(k, cache_k.dtype)], axis=1)   # (batch, slots + 1, head_dim)
            values = ops.concatenate([cache_v, ops.cast(v, cache_v.dtype)], axis=1)
            slot = [0, ops.cast(time, "int32") % cache_k.shape[1], 0]
            new_cache = (ops.slice_update(cache_k, slot, ops.cast(k, cache_k.dtype)),
                         ops.slice_update(cache_v, slot, ops.cast(v, cache_v.dtype)))
        elif cache is not None:                            # a prompt: its last steps fill the ring buffer
            new_cache = (fill_ring_buffer(cache[0], k), fill_ring_buffer(cache[1], v))

        scores = ops.einsum("bthd,bsd->bhts", q, ops.cast(keys, q.dtype))     # (batch, heads, seq, keys)
        scores = ops.cast(scores, "float32") * (self.head_dim ** -0.5)
        scores = ops.where(mask[:, None], scores, MASKED)
        probs32 = ops.softmax(scores, axis=-1)
        probs = ops.cast(probs32, x.dtype)
        mixed = ops.einsum("bhts,bsd->bthd", probs, ops.cast(values, x.dtype))  # (batch, seq, heads, head_dim)
        output = self.proj_final(ops.reshape(mixed, (batch, seq, self.width)))
        if return_probs:
            return output, new_cache, ops.where(mask[:, None], probs32, 0.0)
        return output, new_cache

    def get_config(self):
        return {**super().get_config(), "width": self.width, "num_heads": self.num_heads,
                "window_size": self.window_size}
