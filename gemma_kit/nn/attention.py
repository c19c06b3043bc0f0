"""Scaled dot-product attention over a KV cache, shared by every attention layer.

    scores = q . k                          # q arrives already scaled (each family has its own scale)
    scores = cap * tanh(scores / cap)       # attention-logit soft-cap (Gemma 2), optional
    probs  = softmax(where(mask, scores, -1e30))
    out    = probs . v

Grouped-query attention (Ainslie et al., 2023) lets ``groups = q_heads / kv_heads``
query heads share one key/value head; with one KV head it is multi-query
attention (Shazeer, 2019): Gemma 1 2B, Gemma 3 270M and every Griffin attention
block. We never copy the KV heads: the query heads are reshaped into
``(kv_heads, groups)`` instead.

The family's own layer (``models/*/attention.py``) projects, normalises and
rotates ``q``, ``k`` and ``v``; everything after that is here, including the
read-then-write of the cache (``nn/kv_cache.py``). Scores and the softmax are
computed in float32 whatever the compute dtype.
"""

from keras import ops

from . import kv_cache

# Added to the scores of masked keys. Finite (unlike -inf) so that a row with
# no visible key (a padding query) gives a harmless uniform softmax, not NaN.
MASKED = -1e30


def attend(q, keys, values, mask, soft_cap=None, return_probs=False):
    """q: (batch, seq, q_heads, head_dim), scaled; keys, values: (batch, keys, kv_heads, head_dim).

    mask: (batch, seq, keys) bool. Returns the mixed values (batch, seq, q_heads * head_dim), plus
    the float32 probabilities (batch, q_heads, seq, keys), exact zeros where masked, when ``return_probs``.
    """
    batch, seq, q_heads, head_dim = ops.shape(q)[0], ops.shape(q)[1], q.shape[2], q.shape[3]
    kv_heads = keys.shape[2]
    q = ops.reshape(q, (batch, seq, kv_heads, q_heads // kv_heads, head_dim))   # (batch, seq, kv, groups, dim)
    scores = ops.einsum("btkgh,bskh->bkgts", q, ops.cast(keys, q.dtype))        # (batch, kv, groups, seq, keys)
    scores = ops.cast(scores, "float32")
    if soft_cap is not None:
        scores = soft_cap * ops.tanh(scores / soft_cap)
    scores = ops.where(mask[:, None, None, :, :], scores, MASKED)
    probs = ops.softmax(scores, axis=-1)
    mixed = ops.einsum("bkgts,bskh->btkgh", ops.cast(probs, q.dtype), ops.cast(values, q.dtype))
    mixed = ops.reshape(mixed, (batch, seq, q_heads * head_dim))               # (batch, seq, q_heads * dim)
    if not return_probs:
        return (mixed,)
    probs = ops.reshape(probs, (batch, q_heads, seq, ops.shape(probs)[-1]))    # (batch, q_heads, seq, keys)
    return mixed, ops.where(mask[:, None], probs, 0.0)


def cached_attention(q, k, v, mask, cache=None, time=None, soft_cap=None, return_probs=False):
    """Attention of a chunk's ``q``, ``k``, ``v`` (batch, seq, heads, head_dim) over the cache and itself.

    Returns ``(mixed, new_cache)``, plus the probabilities when ``return_probs`` (see ``attend``).
    """
    keys, values, new_cache = kv_cache.update(cache, k, v, time)
    mixed, *probs = attend(q, keys, values, mask, soft_cap=soft_cap, return_probs=return_probs)
    return (mixed, new_cache, *probs)
