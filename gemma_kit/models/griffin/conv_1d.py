"""The short causal convolution before the RG-LRU (Griffin's ``Conv1D``, temporal width 4).

Each channel is convolved on its own (*depthwise*) with a filter over the last
``temporal_width`` time steps, plus a bias:

    out_t = b + w[3] * x_t + w[2] * x_{t-1} + w[1] * x_{t-2} + w[0] * x_{t-3}

It is *causal* (no future step) and it does not look across a document start:
if ``segment_pos`` is 0 anywhere in ``(t-k, t]``, the term ``x_{t-k}`` is dropped,
exactly as the official ``Conv1D._compute_document_mask`` does.

For generation the layer keeps the last ``temporal_width - 1`` inputs,
(batch, 3, lru_width): a fixed-size cache. Every call continues from it (zeros
before the first token): the inputs are read as ``[state, x]``, so a prompt,
one decoding step and a chunk of several tokens are the same computation. We
zero the entries from before the last document start when we keep them, so left
padding (every pad token is a "document" of its own) never leaks into the first
generated tokens.

Names follow ``recurrentgemma/jax/layers.py`` (``Conv1D``: weights ``w`` (4, width) and ``b``).
"""

import keras
from keras import ops


def _shift_right(x, steps):
    """``x`` (batch, seq, ...) delayed by ``steps`` time steps, zeros in front."""
    seq = x.shape[1]
    if steps == 0:
        return x
    if steps >= seq:
        return ops.zeros_like(x)
    pad = ops.zeros_like(x[:, :steps])
    return ops.concatenate([pad, x[:, :seq - steps]], axis=1)


@keras.saving.register_keras_serializable(package="gemma_kit")
class Conv1D(keras.layers.Layer):
    def __init__(self, width: int, temporal_width: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.width, self.temporal_width = width, temporal_width

    def build(self, input_shape=None):
        init = keras.initializers.RandomNormal(stddev=0.1 / self.temporal_width ** 0.5)
        self.w = self.add_weight(name="w", shape=(self.temporal_width, self.width), initializer=init)
        self.b = self.add_weight(name="b", shape=(self.width,), initializer="zeros")

    def call(self, x, segment_pos, state=None):
        """x: (batch, seq, width); segment_pos: (batch, seq) int, 0 at a document start.

        state: None (nothing before ``x``) or the previous ``temporal_width - 1`` inputs
        (batch, temporal_width - 1, width): a prompt, one decoding step or a chunk of several
        continues from it. Returns ``(out, new_state)``.
        """
        k, batch = self.temporal_width, ops.shape(x)[0]
        w, b = ops.cast(self.w, x.dtype), ops.cast(self.b, x.dtype)
        if state is None:
            state = ops.zeros((batch, k - 1, self.width), x.dtype)
        window = ops.concatenate([ops.cast(state, x.dtype), x], axis=1)         # (batch, k - 1 + seq, width)
        not_start = ops.concatenate([ops.ones((batch, k - 1, 1), x.dtype),     # the history continues...
                                     ops.cast(segment_pos != 0, x.dtype)[:, :, None]], axis=1)   # ...until a start
        out = b
        keep = ops.ones_like(not_start)           # keep[t] = 1 while no document starts in (t-shift, t]
        for shift in range(k):
            if shift:
                keep = keep * _shift_right(not_start, shift - 1)
            out = out + _shift_right(window, shift) * keep * w[k - 1 - shift]
        return out[:, k - 1:], self._state_after(window, not_start)

    def _state_after(self, window, not_start):
        """The last ``temporal_width - 1`` inputs, zeroed before the last document start."""
        length, entries = window.shape[1], []
        keep = ops.ones_like(not_start[:, 0])                                    # (batch, 1)
        for back in range(self.temporal_width - 1):                              # the last step, the one before...
            t = length - 1 - back
            if back:
                keep = keep * not_start[:, t + 1]
            entries.append(window[:, t] * keep)
        return ops.stack(entries[::-1], axis=1)                                  # (batch, temporal_width - 1, width)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "temporal_width": self.temporal_width}
