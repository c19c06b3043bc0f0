"""Gemma 1, 2, 3 and CodeGemma: one decoder-only transformer, told apart by numbers.

| file            | concept                                                              |
|-----------------|----------------------------------------------------------------------|
| ``config.py``   | ``GemmaConfig``: every variant as a set of numbers                   |
| ``presets.py``  | the official checkpoints' rows of the preset table                   |
| ``attention.py``| ``GemmaAttention``: projections, QK-norm, RoPE, query scale, soft-cap |
| ``block.py``    | ``DecoderBlock``: norms, attention, GeGLU MLP, residuals             |
| ``backbone.py`` | ``GemmaBackbone``: the numbers and the block for ``nn/backbone.py``  |
"""

from .backbone import GemmaBackbone
from .block import DecoderBlock
from .config import GLOBAL, LOCAL, GemmaConfig, gemma2_layer_types, gemma3_layer_types

__all__ = ["GemmaBackbone", "DecoderBlock", "GemmaConfig", "LOCAL", "GLOBAL", "gemma2_layer_types",
           "gemma3_layer_types"]
