"""The GeGLU feed-forward block (Shazeer, 2020): ``down(gelu_tanh(gate(x)) * up(x))``.

Gemma uses the *tanh approximation* of GELU; ``keras.activations.gelu`` defaults
to the exact erf form, so we ask for ``approximate=True`` explicitly.
"""

import keras
from keras import ops

from .int8 import Dense


@keras.saving.register_keras_serializable(package="gemma_kit")
class GeGLU(keras.layers.Layer):
    def __init__(self, hidden_dim: int, intermediate_dim: int, use_bias: bool = False,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim, self.intermediate_dim, self.use_bias = hidden_dim, intermediate_dim, use_bias
        dense = dict(use_bias=use_bias, dtype=self.dtype_policy, kernel_initializer=kernel_initializer)
        self.gate = Dense(intermediate_dim, name="gate", **dense)
        self.up = Dense(intermediate_dim, name="up", **dense)
        self.down = Dense(hidden_dim, name="down", **dense)

    def build(self, input_shape):                     # (batch, seq, hidden_dim)
        self.gate.build(input_shape)
        self.up.build(input_shape)
        self.down.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))

    def call(self, x):
        hidden = ops.gelu(self.gate(x), approximate=True) * self.up(x)   # (batch, seq, intermediate_dim)
        return self.down(hidden)                                          # (batch, seq, hidden_dim)

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim, "use_bias": self.use_bias}
