"""QLoRA-style memory saving: an int8 frozen base under float32 LoRA matrices.

QLoRA (Dettmers et al., 2023) keeps the frozen base in 4 bits (NF4) and trains
LoRA matrices in higher precision on top. We use the kit's weight-only int8
(``nn/int8.py``: per-output-channel scales, the same path as ``model.quantize("int8")``
and ``gemma_kit.load(..., quantize="int8")`` for fast decoding), instead of NF4:

    quantize_base(model)                       # every Dense kernel and the tied embedding -> int8
    enable_lora(model, rank=4)                 # then LoRA as usual; A and B stay float32
    weight_bytes(model.backbone)               # about 0.27 GB for Gemma 3 270M, against 1.07 GB

The int8 Dense layer adds the LoRA path itself (``x @ dequant(W) + (alpha/r) x A B``). The tied
embedding and output layer (63% of the 270M's weights) is quantized too; only weights are
rounded, never the activations, so gradients reach the LoRA matrices through the output layer.

Gemma 4: every Dense layer (attention, MLP, per-layer input gate/projection, the
router, the PLE context projection) and every embedding (the PLE table of E2B/E4B
too) become int8. The experts of 26B-A4B do **not**: they are raw 3-D weights of
``MixtureOfExperts`` (``models/gemma4/moe.py``), not layers Keras knows how to
quantize, so ``gate``/``up``/``down`` stay in their float dtype (frozen under LoRA,
with the experts' own float32 LoRA matrices on top). Quantizing them would take
per-expert, per-output-channel scales and a dequantize step in ``MixtureOfExperts.call``.
"""

from __future__ import annotations

import keras
import numpy as np

from ..nn.int8 import quantize_backbone
from .lora import _refresh_compiled, backbone_of, lora_state


def quantize_base(model) -> int:
    """Quantize the Dense kernels and the embeddings of ``model`` to int8; returns the layer count.

    Call it before ``enable_lora`` (Keras adds LoRA on top of a quantized layer, not the reverse).
    Gemma 4's expert weights are left as they are (see the module docstring).
    """
    backbone = backbone_of(model)
    if lora_state(backbone):
        raise ValueError("Quantize the base before enable_lora: this model already has LoRA weights")
    count = quantize_backbone(backbone)
    _refresh_compiled(model)
    return count


def weight_bytes(model) -> int:
    """Bytes taken by the model's variables (int8 kernels 1 byte, their float32 scales 4, ...)."""
    return int(sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
                   for v in backbone_of(model).weights))
