"""Gemma 4 (April 2026: E2B, E4B, 26B-A4B, 31B), text decoder: Gemma 3's decoder, plus a few new layers.

| file                        | concept                                                           |
|-----------------------------|-------------------------------------------------------------------|
| ``config.py``               | ``Gemma4Config``: ``GemmaConfig`` plus Gemma 4's fields, counts   |
| ``presets.py``              | the official checkpoints' rows of the preset table                |
| ``block.py``                | ``Gemma4Block``: Gemma's block + experts, per-layer input, scalar |
| ``backbone.py``             | ``Gemma4Backbone``: the numbers, the block, the PLE layer         |
| ``moe.py``                  | ``MixtureOfExperts``: router and experts (26B-A4B)                |
| ``per_layer_embeddings.py`` | ``PerLayerEmbedding``: PLE (E2B, E4B)                             |
| ``assistant.py``            | ``Gemma4Assistant``: MTP drafter reading the target's cache      |

Attention is ``models/gemma/attention.py`` with Gemma 4's options on (value norm,
keys as values, KV sharing, partial RoPE); KV sharing between blocks is routed by
``nn/backbone.py``.
"""

from .assistant import Gemma4Assistant, Gemma4AssistantConfig
from .backbone import Gemma4Backbone
from .block import Gemma4Block
from .config import Gemma4Config, gemma4_layer_types

__all__ = ["Gemma4Assistant", "Gemma4AssistantConfig", "Gemma4Backbone", "Gemma4Block", "Gemma4Config",
           "gemma4_layer_types"]
