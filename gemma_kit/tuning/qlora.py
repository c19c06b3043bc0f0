"""QLoRA-style memory saving: an int8 frozen base under float32 LoRA matrices.

QLoRA (Dettmers et al., 2023) keeps the frozen base in 4 bits (NF4) and trains
LoRA matrices in higher precision on top. We use Keras' own int8 quantization
(``layer.quantize("int8")``: per-output-channel absmax scales), weights only, instead of NF4:

    quantize_base(model)                       # every Dense kernel and the tied embedding -> int8
    enable_lora(model, rank=4)                 # then LoRA as usual; A and B stay float32
    weight_bytes(model.backbone)               # about 0.27 GB for Gemma 3 270M, against 1.07 GB

Keras' int8 Dense layer adds the LoRA path itself (``x @ dequant(W) + (alpha/r) x A B``).
One deliberate difference from ``model.quantize("int8")``: we quantize each layer ourselves,
the tied embedding and output layer (``keras.layers.ReversibleEmbedding``, 63% of the 270M's
weights) included, with a weights-only config (``WEIGHT_ONLY_INT8`` below).

Gemma 4: every Dense layer (attention, MLP, per-layer input gate/projection, the
router, the PLE context projection) and every embedding (the PLE table of E2B/E4B
too) become int8. The experts of 26B-A4B do **not**: they are raw 3-D weights of
``MixtureOfExperts`` (``models/gemma4/moe.py``), not layers Keras knows how to
quantize, so ``gate``/``up``/``down`` stay in their float dtype (frozen under LoRA,
with the experts' own float32 LoRA matrices on top). Quantizing them would take
per-expert, per-output-channel scales and a dequantize step in ``MixtureOfExperts.call``.
"""

from __future__ import annotations

import contextlib
import gc

import keras
import numpy as np

from .lora import _refresh_compiled, backbone_of, lora_state, sublayers


# Weights in int8, activations left in float. Keras' default int8 also rounds each layer's *input*
# to int8; that rounding has no gradient in the tied output layer (ReversibleEmbedding's reverse
# call), so no gradient would reach the LoRA matrices. QLoRA quantizes weights only, too.
WEIGHT_ONLY_INT8 = keras.quantizers.Int8QuantizationConfig(activation_quantizer=None)


def quantize_base(model) -> int:
    """Quantize the Dense kernels and the embeddings of ``model`` to int8; returns the layer count.

    Call it before ``enable_lora`` (Keras adds LoRA on top of a quantized layer, not the reverse).
    Gemma 4's expert weights are left as they are (see the module docstring).
    """
    backbone = backbone_of(model)
    if lora_state(backbone):
        raise ValueError("Quantize the base before enable_lora: this model already has LoRA weights")
    count = 0
    with _one_garbage_collection():
        for layer in sublayers(backbone):
            # Embedding: the tied token embedding (a ReversibleEmbedding) and Gemma 4's PLE table.
            if isinstance(layer, (keras.layers.Dense, keras.layers.Embedding)) and not layer.quantization_mode:
                layer.quantize("int8", type_check=False, config=WEIGHT_ONLY_INT8)
                count += 1
    _refresh_compiled(model)
    return count


@contextlib.contextmanager
def _one_garbage_collection():
    """Keras runs ``gc.collect()`` each time a layer drops its float kernel (``Layer.__delattr__``):
    about a second per layer in a big Python heap, minutes for a whole model. Collect once at the end."""
    collect = gc.collect
    gc.collect = lambda *args, **kwargs: 0
    try:
        yield
    finally:
        gc.collect = collect
        gc.collect()


def weight_bytes(model) -> int:
    """Bytes taken by the model's variables (int8 kernels 1 byte, their float32 scales 4, ...)."""
    return int(sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
                   for v in backbone_of(model).weights))
