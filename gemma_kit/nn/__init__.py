"""Family-agnostic building blocks: what every model family in ``gemma_kit/models/`` is made of.

| file            | concept                                                                   |
|-----------------|---------------------------------------------------------------------------|
| ``rms_norm.py`` | RMSNorm with Gemma's ``(1 + scale)``                                       |
| ``precision.py``| float16: the residual stream stays float32 (it passes 65,504)              |
| ``rotary.py``   | rotary position embeddings (RoPE), on all or part of a head                |
| ``geglu.py``    | the GeGLU feed-forward block                                               |
| ``masks.py``    | which keys a query may see: one mask, the window rule as a parameter       |
| ``kv_cache.py`` | the KV ring buffer: one read-then-write order, ``cache_bytes``             |
| ``attention.py``| grouped-query softmax attention over the cache                             |
| ``backbone.py`` | the decoder skeleton: embed, blocks, norm, tied output; prefill and decode |
| ``config.py``   | config serialization and the preset row                                   |
"""

from .backbone import LanguageModelBackbone
from .config import Preset, SerializableConfig
from .geglu import GeGLU
from .kv_cache import cache_bytes
from .masks import attention_mask, document_ids
from .rms_norm import RMSNorm
from .rotary import apply_rope

__all__ = ["LanguageModelBackbone", "Preset", "SerializableConfig", "GeGLU", "cache_bytes", "attention_mask",
           "document_ids", "RMSNorm", "apply_rope"]
