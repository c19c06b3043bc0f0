"""RMSNorm as Gemma uses it: ``x / rms(x) * (1 + scale)``, computed in float32.

Root-mean-square normalisation (Zhang & Sennrich, 2019) drops LayerNorm's mean
subtraction and bias. Gemma's twist is the ``1 + scale`` parameterisation with
``scale`` initialised to zeros, so a fresh layer is the identity scaling.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="gemma_kit")
class RMSNorm(keras.layers.Layer):
    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="zeros")

    def call(self, x):                                       # x: (..., dim)
        x32 = ops.cast(x, "float32")
        mean_square = ops.mean(ops.square(x32), axis=-1, keepdims=True)   # (..., 1)
        normed = x32 * ops.rsqrt(mean_square + self.epsilon)
        return ops.cast(normed * (1.0 + ops.cast(self.scale, "float32")), x.dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
