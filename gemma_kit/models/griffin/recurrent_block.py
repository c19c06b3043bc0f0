"""Griffin's recurrent block: the temporal-mixing half of two residual blocks out of three.

Two branches of width ``lru_width`` (De et al. 2024, figure 2):

    y = gelu_tanh(linear_y(x))                       # (batch, seq, lru_width): a GeLU gate
    u = linear_x(x)                                  # (batch, seq, lru_width)
    u = conv_1d(u)                                   # short causal convolution (width 4)
    u = rg_lru(u)                                    # the gated linear recurrence
    out = linear_out(u * y)                          # (batch, seq, width)

All three linear layers have biases. The block's generation cache is
``(rg_lru_state, conv1d_state)``: (batch, lru_width) float32 and
(batch, 3, lru_width). Neither grows with the number of tokens.

Names follow ``recurrentgemma/jax/modules.py`` (``RecurrentBlock``).
"""

import keras
from keras import ops

from ...nn.int8 import Dense
from .conv_1d import Conv1D
from .rg_lru import RGLRU


@keras.saving.register_keras_serializable(package="gemma_kit")
class RecurrentBlock(keras.layers.Layer):
    def __init__(self, width: int, lru_width: int, num_heads: int, conv1d_temporal_width: int = 4,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.width, self.lru_width, self.num_heads = width, lru_width, num_heads
        self.conv1d_temporal_width = conv1d_temporal_width
        dense = dict(use_bias=True, kernel_initializer=kernel_initializer, dtype=self.dtype_policy)
        self.linear_y = Dense(lru_width, name="linear_y", **dense)
        self.linear_x = Dense(lru_width, name="linear_x", **dense)
        self.linear_out = Dense(width, name="linear_out", **dense)
        self.conv_1d = Conv1D(lru_width, conv1d_temporal_width, name="conv_1d", dtype=self.dtype_policy)
        self.rg_lru = RGLRU(lru_width, num_heads, kernel_initializer=kernel_initializer, name="rg_lru",
                            dtype=self.dtype_policy)

    def build(self, input_shape):                              # (batch, seq, width)
        inner = tuple(input_shape[:-1]) + (self.lru_width,)
        self.linear_y.build(input_shape)
        self.linear_x.build(input_shape)
        self.linear_out.build(inner)
        self.conv_1d.build(inner)
        self.rg_lru.build(inner)

    def init_cache(self, batch_size, dtype):
        """``(rg_lru_state, conv1d_state)`` before any token: zeros, (batch, lru_width) float32 and
        (batch, conv1d_temporal_width - 1, lru_width)."""
        return (ops.zeros((batch_size, self.lru_width), "float32"),
                ops.zeros((batch_size, self.conv1d_temporal_width - 1, self.lru_width), dtype))

    def call(self, x, segment_pos, cache=None, return_gates=False):
        """x: (batch, seq, width). cache: None (nothing before ``x``) or ``(rg_lru_state, conv1d_state)``.

        The tokens continue from the cached states, whatever their number. Returns
        ``(out, (rg_lru_state, conv1d_state))``, the states after the last token, plus the
        RG-LRU's gates (see ``RGLRU.call``) when ``return_gates``.
        """
        lru_state, conv_state = (None, None) if cache is None else cache
        y = ops.gelu(self.linear_y(x), approximate=True)                     # (batch, seq, lru_width)
        u = self.linear_x(x)
        u, conv_state = self.conv_1d(u, segment_pos, state=conv_state)
        u, lru_state, *gates = self.rg_lru(u, segment_pos, state=lru_state, return_gates=return_gates)
        return (self.linear_out(u * y), (lru_state, conv_state)) + tuple(gates)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "lru_width": self.lru_width,
                "num_heads": self.num_heads, "conv1d_temporal_width": self.conv1d_temporal_width}
