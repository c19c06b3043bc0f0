"""One attention layer for every Gemma: multi-head, grouped-query or multi-query.

    q = rope(qk_norm(x @ W_q))          # (batch, seq, num_query_heads, head_dim)
    k = rope(qk_norm(x @ W_k))          # (batch, keys, num_kv_heads, head_dim)
    v = x @ W_v                         # (batch, keys, num_kv_heads, head_dim)
    scores = q . k / sqrt(query_pre_attn_scalar)   (optionally soft-capped)
    out = softmax(scores + mask) . v  @ W_o

Grouped-query attention (Ainslie et al., 2023) lets ``num_groups`` query heads
share one key/value head; with a single KV head it is multi-query attention
(Shazeer, 2019), as in Gemma 1 2B and Gemma 3 270M. We never copy the KV heads:
the query heads are reshaped into ``(num_kv_heads, num_groups)`` instead.

Which keys a query may see (causal, sliding window, padding) arrives as a
boolean ``mask`` built once per forward pass by the backbone, so this layer
does not care whether it is a local or a global layer, or whether it reads
a KV cache.

The KV cache
------------
Generating token ``t`` needs the keys and values of tokens ``0..t-1``, which
do not change: we keep them instead of recomputing them. ``cache`` is a pair
``(keys, values)`` of shape ``(batch, cache_len, num_kv_heads, head_dim)``.
A global layer's cache has a slot per time step. A sliding-window layer's is a
*ring buffer* of ``sliding_window`` slots: time step ``t`` lives in slot
``t % cache_len``, overwriting a key that has slid out of the window.
"""

import keras
from keras import ops

from .rms_norm import RMSNorm
from .rotary import apply_rope

# Added to the scores of masked keys. Finite (unlike -inf) so that a row with
# no visible key (a padding query) gives a harmless uniform softmax, not NaN.
MASKED = -1e30


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

    def _project(self, dense, x, num_heads, positions):
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        heads = ops.reshape(dense(x), (batch, seq, num_heads, self.head_dim))  # (batch, seq, heads, head_dim)
        if self.use_qk_norm:
            heads = (self.query_norm if dense is self.query else self.key_norm)(heads)
        return apply_rope(heads, positions, self.rope_base, self.rope_scaling_factor)

    def call(self, x, positions, mask, cache=None, write_index=None, return_probs=False):
        """Attend from ``x`` (batch, seq, hidden_dim).

        positions: (batch, seq) int, the RoPE position of each query token.
        mask: (batch, seq, keys) bool, True where a query may see a key.
        cache: None, or ``(keys, values)`` each (batch, cache_len, num_kv_heads, head_dim).
        write_index: the time step of ``x[:, 0]``; with a cache, the new keys and
            values are stored there (modulo ``cache_len`` for a ring buffer).

        Returns ``(output, new_cache)``, plus the attention probabilities
        (batch, num_query_heads, seq, keys) when ``return_probs``.
        With ``seq > 1`` (a prompt), the queries attend to the fresh keys;
        with ``seq == 1`` (one decoding step), to the whole cache.
        """
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        q = self._project(self.query, x, self.num_query_heads, positions)   # (batch, seq, heads, head_dim)
        k = self._project(self.key, x, self.num_kv_heads, positions)        # (batch, seq, kv_heads, head_dim)
        v = ops.reshape(self.value(x), (batch, seq, self.num_kv_heads, self.head_dim))

        new_cache = None
        keys, values = k, v
        if cache is not None:
            new_cache = _write_cache(cache, k, v, write_index)
            if x.shape[1] == 1:                             # decoding: read everything cached so far
                keys, values = new_cache

        groups = self.num_query_heads // self.num_kv_heads
        q = q * ops.cast(self.query_pre_attn_scalar ** -0.5, q.dtype)
        q = ops.reshape(q, (batch, seq, self.num_kv_heads, groups, self.head_dim))
        scores = ops.einsum("btkgh,bskh->bkgts", q, keys)              # (batch, kv_heads, groups, seq, keys)
        scores = ops.cast(scores, "float32")
        if self.soft_cap is not None:
            scores = self.soft_cap * ops.tanh(scores / self.soft_cap)
        scores = ops.where(mask[:, None, None, :, :], scores, MASKED)
        probs = ops.softmax(scores, axis=-1)
        mixed = ops.einsum("bkgts,bskh->btkgh", ops.cast(probs, values.dtype), values)
        mixed = ops.reshape(mixed, (batch, seq, self.num_query_heads * self.head_dim))
        output = self.attention_output(mixed)                          # (batch, seq, hidden_dim)
        if return_probs:
            probs = ops.reshape(probs, (batch, self.num_query_heads, seq, ops.shape(probs)[-1]))
            probs = ops.where(mask[:, None], probs, 0.0)            # exact zeros where masked
            return output, new_cache, probs
        return output, new_cache

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "num_query_heads": self.num_query_heads,
                "num_kv_heads": self.num_kv_heads, "head_dim": self.head_dim,
                "query_pre_attn_scalar": self.query_pre_attn_scalar, "soft_cap": self.soft_cap,
                "use_qk_norm": self.use_qk_norm, "rope_base": self.rope_base,
                "rope_scaling_factor": self.rope_scaling_factor, "rms_norm_eps": self.rms_norm_eps}


def ring_slot_times(newest, length):
    """(1, length) int: the time step each slot of a ring buffer holds once time ``newest`` is written.

    Slot ``s`` holds the latest time step ``t <= newest`` with ``t % length == s``; a negative
    value means the slot was never written. A cache with a slot per step is the special case
    ``length > newest`` (slot ``s`` holds step ``s``).
    """
    slots = ops.arange(length, dtype="int32")[None, :]
    return newest - (newest - slots) % length


def _write_cache(cache, k, v, write_index):
    """Store ``k``/``v`` (batch, seq, kv_heads, head_dim) for time steps ``write_index ...``.

    For ``seq == 1`` ``write_index`` may be a traced scalar: slot ``write_index % cache_len``.
    For a prompt (``seq > 1``, written at time 0) we keep the last ``cache_len`` steps,
    each in the slot ``t % cache_len``, so that the ring buffer layout holds.
    """
    cache_k, cache_v = cache
    cache_len, seq = cache_k.shape[1], k.shape[1]
    if seq == 1:
        slot = ops.cast(write_index, "int32") % cache_len
        start = [0, slot, 0, 0]
        return (ops.slice_update(cache_k, start, ops.cast(k, cache_k.dtype)),
                ops.slice_update(cache_v, start, ops.cast(v, cache_v.dtype)))
    if seq > cache_len:            # a prompt longer than the window: keep its last cache_len steps
        shift = seq % cache_len    # time step `seq - cache_len` belongs in slot `shift`
        k = ops.roll(k[:, seq - cache_len:], shift, axis=1)
        v = ops.roll(v[:, seq - cache_len:], shift, axis=1)
    return (ops.slice_update(cache_k, [0, 0, 0, 0], ops.cast(k, cache_k.dtype)),
            ops.slice_update(cache_v, [0, 0, 0, 0], ops.cast(v, cache_v.dtype)))
