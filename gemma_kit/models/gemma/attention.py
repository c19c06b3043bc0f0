"""One attention layer for every Gemma: multi-head, grouped-query or multi-query.

    q = rope(qk_norm(x @ W_q))          # (batch, seq, num_query_heads, head_dim)
    k = rope(qk_norm(x @ W_k))          # (batch, seq, num_kv_heads, head_dim)
    v = x @ W_v                         # (batch, seq, num_kv_heads, head_dim)
    scores = q . k / sqrt(query_pre_attn_scalar)   (optionally soft-capped)
    out = softmax(scores + mask) . v  @ W_o

What is Gemma's own is here: the projections, QK-norm (Gemma 3), the RoPE base
of the layer (Gemma 3: 10,000 local, 1,000,000 global), the query scale
``query_pre_attn_scalar ** -0.5`` and the attention-logit soft-cap (Gemma 2).
Gemma 4 adds four options, each a constructor argument:

- ``value_norm``: values get an RMSNorm without a scale (``v = norm(x @ W_v)``);
- ``keys_are_values`` (global layers of the larger models): there is no ``W_v``,
  ``v = norm(x @ W_k)``, the keys before their own norm and RoPE;
- ``reuses_kv`` (the last layers of E2B/E4B): no ``W_k``, ``W_v``; the layer
  attends to the keys and values an earlier layer read (``shared_kv``);
- ``rotated_fraction``: "proportional" RoPE, only a quarter of a global head turns.

The grouped-query softmax and the KV cache are shared with Griffin
(``nn/attention.py``, ``nn/kv_cache.py``); which keys a query may see (causal,
sliding window, padding) arrives as a boolean ``mask`` built by the backbone, so
this layer does not know whether it is local or global.
"""

import keras
from keras import ops

from ...nn import kv_cache
from ...nn.attention import attend
from ...nn.int8 import Dense
from ...nn.rms_norm import RMSNorm
from ...nn.rotary import apply_rope


@keras.saving.register_keras_serializable(package="gemma_kit")
class GemmaAttention(keras.layers.Layer):
    def __init__(self, hidden_dim, num_query_heads, num_kv_heads, head_dim, query_pre_attn_scalar=None,
                 soft_cap=None, use_qk_norm=False, rope_base=10_000.0, rope_scaling_factor=1.0,
                 rms_norm_eps=1e-6, norm_unit_offset=True, value_norm=False, keys_are_values=False,
                 reuses_kv=False, rotated_fraction=1.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim, self.head_dim = hidden_dim, head_dim
        self.num_query_heads, self.num_kv_heads = num_query_heads, num_kv_heads
        self.query_pre_attn_scalar = query_pre_attn_scalar or head_dim
        self.soft_cap, self.use_qk_norm = soft_cap, use_qk_norm
        self.rope_base, self.rope_scaling_factor, self.rms_norm_eps = rope_base, rope_scaling_factor, rms_norm_eps
        self.norm_unit_offset, self.value_norm, self.keys_are_values = norm_unit_offset, value_norm, keys_are_values
        self.reuses_kv, self.rotated_fraction = reuses_kv, rotated_fraction
        dense = dict(use_bias=False, dtype=self.dtype_policy, kernel_initializer=kernel_initializer)
        norm = dict(epsilon=rms_norm_eps, unit_offset=norm_unit_offset, dtype=self.dtype_policy)
        self.query = Dense(num_query_heads * head_dim, name="query", **dense)
        self.attention_output = Dense(hidden_dim, name="attention_output", **dense)
        if not reuses_kv:                                  # a layer that borrows keys/values has no W_k, W_v
            self.key = Dense(num_kv_heads * head_dim, name="key", **dense)
            if not keys_are_values:
                self.value = Dense(num_kv_heads * head_dim, name="value", **dense)
        if use_qk_norm:
            self.query_norm = RMSNorm(name="query_norm", **norm)
            if not reuses_kv:
                self.key_norm = RMSNorm(name="key_norm", **norm)
        if value_norm and not reuses_kv:
            self.value_norm_layer = RMSNorm(use_scale=False, name="value_norm", **norm)

    def build(self, input_shape):                          # (batch, seq, hidden_dim)
        for name in ("query", "key", "value"):
            if hasattr(self, name):
                getattr(self, name).build(input_shape)
        self.attention_output.build(tuple(input_shape[:-1]) + (self.num_query_heads * self.head_dim,))
        for norm in ("query_norm", "key_norm", "value_norm_layer"):
            if hasattr(self, norm):
                getattr(self, norm).build((None, None, None, self.head_dim))

    def _heads(self, dense, x, num_heads):
        """x @ W split into heads: (batch, seq, heads, head_dim)."""
        return ops.reshape(dense(x), (ops.shape(x)[0], ops.shape(x)[1], num_heads, self.head_dim))

    def _rotate(self, heads, norm, positions):
        """QK-norm (Gemma 3) then RoPE, on queries or keys (batch, seq, heads, head_dim)."""
        if self.use_qk_norm:
            heads = norm(heads)
        return apply_rope(heads, positions, self.rope_base, self.rope_scaling_factor,
                          rotated_fraction=self.rotated_fraction)

    def keys_and_values(self, x, positions):
        """This chunk's fresh keys (normed, rotated) and values, each (batch, seq, num_kv_heads, head_dim)."""
        k = self._heads(self.key, x, self.num_kv_heads)                      # (batch, seq, kv_heads, head_dim)
        v = k if self.keys_are_values else self._heads(self.value, x, self.num_kv_heads)
        if self.value_norm:
            v = self.value_norm_layer(v)                                     # Gemma 4: RMSNorm, no scale
        return self._rotate(k, getattr(self, "key_norm", None), positions), v

    def call(self, x, positions, mask, cache=None, time=None, return_probs=False, shared_kv=None,
             return_kv=False):
        """Attend from ``x`` (batch, seq, hidden_dim).

        positions: (batch, seq) int, the RoPE position of each token.
        mask: (batch, seq, keys) bool, True where a query may see a key (the cache's, then its own).
        cache: None, or the ``(keys, values)`` ring (batch, slots, num_kv_heads, head_dim); time: the
        time step of ``x[:, 0]`` (``nn/kv_cache.py``).
        shared_kv: the ``(keys, values)`` an earlier layer read (``reuses_kv``; then there is no cache).
        Returns ``(output, new_cache)``, then the ``(keys, values)`` read when ``return_kv`` (KV sharing),
        then the attention probabilities (batch, num_query_heads, seq, keys) when ``return_probs``.
        """
        q = self._rotate(self._heads(self.query, x, self.num_query_heads),
                         getattr(self, "query_norm", None), positions)       # (batch, seq, heads, head_dim)
        q = q * ops.cast(self.query_pre_attn_scalar ** -0.5, q.dtype)
        if self.reuses_kv:
            (keys, values), new_cache = shared_kv, cache                     # borrowed: nothing to store
        else:                                                                # read [ring, fresh], then write
            keys, values, new_cache = kv_cache.update(cache, *self.keys_and_values(x, positions), time)
        mixed, *probs = attend(q, keys, values, mask, soft_cap=self.soft_cap, return_probs=return_probs)
        kv = ((keys, values),) if return_kv else ()
        return (self.attention_output(mixed), new_cache, *kv, *probs)        # (batch, seq, hidden_dim)

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "num_query_heads": self.num_query_heads,
                "num_kv_heads": self.num_kv_heads, "head_dim": self.head_dim,
                "query_pre_attn_scalar": self.query_pre_attn_scalar, "soft_cap": self.soft_cap,
                "use_qk_norm": self.use_qk_norm, "rope_base": self.rope_base,
                "rope_scaling_factor": self.rope_scaling_factor, "rms_norm_eps": self.rms_norm_eps,
                "norm_unit_offset": self.norm_unit_offset, "value_norm": self.value_norm,
                "keys_are_values": self.keys_are_values, "reuses_kv": self.reuses_kv,
                "rotated_fraction": self.rotated_fraction}
