"""Which keys a query may see: one boolean mask for every attention layer of every family.

Every token has a *time step* (its column in the padded batch, or its place in
the generation). A query at time ``q`` may see a key at time ``k`` when

    k <= q                      causal: never the future
    q - k <= lookback           a sliding window (``lookback=None``: a global layer sees all)
    same document               packed sequences: ``segment_pos == 0`` starts a new document
    the key is valid            not padding, and a cache slot that was written

The families differ only in ``lookback``, the window rule:

| family                      | window ``w`` in the config        | keys a query sees | ``lookback`` |
|-----------------------------|-----------------------------------|-------------------|--------------|
| Gemma 2/3 local layers      | ``sliding_window``                | ``w``             | ``w - 1``    |
| Griffin local attention     | ``attention_window_size``         | ``w + 1``         | ``w``        |

(The Griffin rule is the official ``recurrentgemma`` code's, ``q <= k + window``;
transformers' port sees ``w`` keys, see ``models/griffin/attention.py``.)
The mask is built once per forward pass and per layer type by the backbone
(``nn/backbone.py``), so an attention layer never knows which rule it follows.
"""

from keras import ops


def attention_mask(query_times, key_times, key_valid=None, lookback=None, query_segments=None,
                   key_segments=None):
    """(batch, queries, keys) bool, True where a query may see a key.

    query_times: (batch, queries) int; key_times, key_valid: (batch, keys) int / bool.
    lookback: the furthest a query looks back (None: no limit).
    query_segments, key_segments: (batch, queries) / (batch, keys) document ids, or None.
    """
    q, k = query_times[:, :, None], key_times[:, None, :]           # (batch, queries, 1), (batch, 1, keys)
    mask = k <= q                                                   # causal
    if lookback is not None:
        mask = ops.logical_and(mask, q - k <= lookback)             # the sliding window
    if query_segments is not None:
        mask = ops.logical_and(mask, query_segments[:, :, None] == key_segments[:, None, :])
    if key_valid is not None:
        mask = ops.logical_and(mask, key_valid[:, None, :])         # padding, unwritten cache slots
    return mask


def document_ids(segment_pos):
    """(batch, seq) int: which document each token belongs to (a new one wherever segment_pos is 0)."""
    return ops.cumsum(ops.cast(segment_pos == 0, "int32"), axis=1)
