"""One attention layer for every Gemma: multi-head, grouped-query or multi-query.

    q = rope(qk_norm(x @ W_q))          # (batch, seq, num_query_heads, head_dim)
    k = rope(qk_norm(x @ W_k))          # (batch, seq, num_kv_heads, head_dim)
    v = x @ W_v                         # (batch, seq, num_kv_heads, head_dim)
    scores = q . k / sqrt(query_pre_attn_scalar)   (optionally soft-capped)
    out = softmax(scores + mask) . v  @ W_o

What is Gemma's own is here: the projections, QK-norm (Gemma 3), the RoPE base
of the layer (Gemma 3: 10,000 local, 1,000,000 global), the query scale
``query_pre_attn_scalar ** -0.5`` and the attention-logit soft-cap (Gemma 2).
The grouped-query softmax and the KV cache are shared with Griffin
(``nn/attention.py``, ``nn/kv_cache.py``); which keys a query may see (causal,
sliding window, padding) arrives as a boolean ``mask`` built by the backbone, so
this layer does not know whether it is local or global.
"""

import keras
from keras import ops

from ...nn.attention import cached_attention
from ...nn.rms_norm import RMSNorm
from ...nn.rotary import apply_rope


@keras.saving.register_keras_serializable(package="gemma_kit")
class GemmaAttention(keras.layers.Layer):
    def __init__(self, hidden_dim, num_query_heads, num_kv_heads, head_dim, query_pre_attn_scalar=None,
                 soft_cap=None, use_qk_norm=False, rope_base=10_000.0, rope_scaling_factor=1.0,
                 rms_norm_eps=1e-6, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim, self.head_dim = hidden_dim, head_dim
        self.num_query_heads, self.num_kv_heads = num_query_heads, num_kv_heads
        self.query_pre_attn_scalar = query_pre_attn_scalar or head_dim
        self.soft_cap, self.use_qk_norm = soft_cap, use_qk_norm
        self.rope_base, self.rope_scaling_factor, self.rms_norm_eps = rope_base, rope_scaling_factor, rms_norm_eps
        dense = dict(use_bias=False, dtype=self.dtype_policy, kernel_initializer=kernel_initializer)
        self.query = keras.layers.Dense(num_query_heads * head_dim, name="query", **dense)
        self.key = keras.layers.Dense(num_kv_heads * head_dim, name="key", **dense)
        self.value = keras.layers.Dense(num_kv_heads * head_dim, name="value", **dense)
        self.attention_output = keras.layers.Dense(hidden_dim, name="attention_output", **dense)
        if use_qk_norm:
            self.query_norm = RMSNorm(rms_norm_eps, name="query_norm", dtype=self.dtype_policy)
            self.key_norm = RMSNorm(rms_norm_eps, name="key_norm", dtype=self.dtype_policy)

    def build(self, input_shape):                          # (batch, seq, hidden_dim)
        for layer in (self.query, self.key, self.value):
            layer.build(input_shape)
        self.attention_output.build(tuple(input_shape[:-1]) + (self.num_query_heads * self.head_dim,))
        if self.use_qk_norm:
            self.query_norm.build((None, None, None, self.head_dim))
            self.key_norm.build((None, None, None, self.head_dim))

    def _heads(self, dense, x, num_heads):
        """x @ W split into heads: (batch, seq, heads, head_dim)."""
        return ops.reshape(dense(x), (ops.shape(x)[0], ops.shape(x)[1], num_heads, self.head_dim))

    def _rotate(self, heads, norm, positions):
        """QK-norm (Gemma 3) then RoPE, on queries or keys (batch, seq, heads, head_dim)."""
        if self.use_qk_norm:
            heads = norm(heads)
        return apply_rope(heads, positions, self.rope_base, self.rope_scaling_factor)

    def call(self, x, positions, mask, cache=None, time=None, return_probs=False):
        """Attend from ``x`` (batch, seq, hidden_dim).

        positions: (batch, seq) int, the RoPE position of each token.
        mask: (batch, seq, keys) bool, True where a query may see a key (the cache's, then its own).
        cache: None, or the ``(keys, values)`` ring (batch, slots, num_kv_heads, head_dim); time: the
        time step of ``x[:, 0]`` (``nn/kv_cache.py``).
        Returns ``(output, new_cache)``, plus the attention probabilities
        (batch, num_query_heads, seq, keys) when ``return_probs``.
        """
        q = self._rotate(self._heads(self.query, x, self.num_query_heads),
                         getattr(self, "query_norm", None), positions)       # (batch, seq, heads, head_dim)
        k = self._rotate(self._heads(self.key, x, self.num_kv_heads),
                         getattr(self, "key_norm", None), positions)         # (batch, seq, kv_heads, head_dim)
        v = self._heads(self.value, x, self.num_kv_heads)                    # (batch, seq, kv_heads, head_dim)
        q = q * ops.cast(self.query_pre_attn_scalar ** -0.5, q.dtype)
        mixed, new_cache, *probs = cached_attention(q, k, v, mask, cache, time, soft_cap=self.soft_cap,
                                                    return_probs=return_probs)
        return (self.attention_output(mixed), new_cache, *probs)             # (batch, seq, hidden_dim)

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "num_query_heads": self.num_query_heads,
                "num_kv_heads": self.num_kv_heads, "head_dim": self.head_dim,
                "query_pre_attn_scalar": self.query_pre_attn_scalar, "soft_cap": self.soft_cap,
                "use_qk_norm": self.use_qk_norm, "rope_base": self.rope_base,
                "rope_scaling_factor": self.rope_scaling_factor, "rms_norm_eps": self.rms_norm_eps}
