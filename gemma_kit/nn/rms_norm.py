"""RMSNorm as Gemma uses it: ``x / rms(x) * (1 + scale)``, computed in float32.

Root-mean-square normalisation (Zhang & Sennrich, 2019) drops LayerNorm's mean
subtraction and bias. Gemma 1-3's twist is the ``1 + scale`` parameterisation
with ``scale`` initialised to zeros, so a fresh layer is the identity scaling.
Gemma 4 went back to the plain form, ``x / rms(x) * scale`` with ``scale``
initialised to ones (``unit_offset=False``), and normalises its attention
values and its router input with no scale at all (``use_scale=False``).

The output has the input's dtype. Under a float16 policy the residual stream is
float32 (``nn/precision.py``): a norm takes it as it is (no cast down to float16,
which would overflow) and returns float32; the matmul after it casts to float16.
"""

import keras
from keras import ops

from .precision import autocast_inputs


@keras.saving.register_keras_serializable(package="gemma_kit")
class RMSNorm(keras.layers.Layer):
    def __init__(self, epsilon: float = 1e-6, unit_offset: bool = True, use_scale: bool = True, **kwargs):
        super().__init__(autocast=autocast_inputs(kwargs.get("dtype")), **kwargs)
        self.epsilon, self.unit_offset, self.use_scale = epsilon, unit_offset, use_scale

    def build(self, input_shape):
        if self.use_scale:
            self.scale = self.add_weight(name="scale", shape=(input_shape[-1],),
                                         initializer="zeros" if self.unit_offset else "ones")

    def call(self, x):                                       # x: (..., dim)
        x32 = ops.cast(x, "float32")
        mean_square = ops.mean(ops.square(x32), axis=-1, keepdims=True)   # (..., 1)
        normed = x32 * ops.rsqrt(mean_square + self.epsilon)
        if self.use_scale:
            scale = ops.cast(self.scale, "float32")
            normed = normed * (1.0 + scale if self.unit_offset else scale)
        return ops.cast(normed, x.dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "unit_offset": self.unit_offset,
                "use_scale": self.use_scale}
