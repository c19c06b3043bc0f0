"""Griffin's local attention block: multi-query attention over a sliding window.

    q = rope_half(x @ W_q)          # (batch, seq, num_heads, head_dim), head_dim = width / num_heads
    k = rope_half(x @ W_k)          # (batch, seq, 1, head_dim): ONE key head shared by all query heads (MQA)
    v = x @ W_v                     # (batch, seq, 1, head_dim)
    out = softmax(q . k / sqrt(head_dim) + mask) . v  @ W_final + b_final

Details that differ from Gemma's attention (``models/gemma/attention.py``):
- RoPE rotates only the *first half* of each head (``rotary_dim = head_dim / 2``);
  the second half carries no position.
- The window: a query at time ``t`` sees keys ``t - window ... t``, that is
  ``window + 1`` keys (the official ``_compute_causal_mask`` tests
  ``q <= k + window``); the backbone's mask says so (``lookback`` in ``block.py``).
  transformers' port sees only ``window``; we follow the official code.
- Only the output projection has a bias; no QK-norm, no soft-cap.

The generation cache is the shared ring buffer (``nn/kv_cache.py``) of the last
``window`` keys and values: a decoding step reads those ``window`` and its own
(``window + 1`` keys), then overwrites the oldest slot. Memory stays constant
however long the generation runs.

Names follow ``recurrentgemma/jax/modules.py`` (``LocalAttentionBlock``, ``proj_q``, ...).
"""

import keras
from keras import ops

from ...nn.attention import cached_attention
from ...nn.int8 import Dense
from ...nn.rotary import apply_rope


@keras.saving.register_keras_serializable(package="gemma_kit")
class LocalAttentionBlock(keras.layers.Layer):
    def __init__(self, width: int, num_heads: int, window_size: int, kernel_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        self.width, self.num_heads, self.window_size = width, num_heads, window_size
        self.head_dim = width // num_heads
        dense = dict(kernel_initializer=kernel_initializer, dtype=self.dtype_policy)
        self.proj_q = Dense(width, use_bias=False, name="proj_q", **dense)
        self.proj_k = Dense(self.head_dim, use_bias=False, name="proj_k", **dense)
        self.proj_v = Dense(self.head_dim, use_bias=False, name="proj_v", **dense)
        self.proj_final = Dense(width, use_bias=True, name="proj_final", **dense)

    def build(self, input_shape):                              # (batch, seq, width)
        for layer in (self.proj_q, self.proj_k, self.proj_v, self.proj_final):
            layer.build(input_shape)

    def call(self, x, positions, mask, cache=None, time=None, return_probs=False):
        """x: (batch, seq, width); positions: (batch, seq) int, what RoPE sees.

        mask: (batch, seq, keys) bool, True where a query may see a key (the cache's, then its own).
        cache: None or the ``(keys, values)`` ring (batch, slots, 1, head_dim); time: the time step of
        ``x[:, 0]``. Returns ``(output, new_cache)``, plus the float32 attention probabilities
        (batch, num_heads, seq, keys), exact zeros where masked, when ``return_probs``.
        """
        batch, seq, half = ops.shape(x)[0], ops.shape(x)[1], self.head_dim // 2
        q = ops.reshape(self.proj_q(x), (batch, seq, self.num_heads, self.head_dim))
        q = apply_rope(q, positions, rotary_dim=half)                          # (batch, seq, heads, head_dim)
        k = ops.reshape(self.proj_k(x), (batch, seq, 1, self.head_dim))
        k = apply_rope(k, positions, rotary_dim=half)                          # (batch, seq, 1, head_dim)
        v = ops.reshape(self.proj_v(x), (batch, seq, 1, self.head_dim))
        q = q * ops.cast(self.head_dim ** -0.5, q.dtype)
        mixed, new_cache, *probs = cached_attention(q, k, v, mask, cache, time, return_probs=return_probs)
        return (self.proj_final(mixed), new_cache, *probs)                     # (batch, seq, width)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "num_heads": self.num_heads,
                "window_size": self.window_size}
