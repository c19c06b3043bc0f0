"""RecurrentGemma (Griffin, De et al. 2024) in Keras 3: RG-LRU recurrences mixed with local attention.

One concept a file, named as in DeepMind's ``recurrentgemma`` package:

| file                  | concept                                                            |
|-----------------------|--------------------------------------------------------------------|
| ``config.py``         | ``GriffinConfig``, the four official presets, the parameter count  |
| ``rg_lru.py``         | the RG-LRU recurrence and its parallel (associative) scan          |
| ``conv_1d.py``        | the short causal depthwise convolution                             |
| ``recurrent_block.py``| the two-branch recurrent block                                     |
| ``local_attention.py``| multi-query sliding-window attention, RoPE on half of each head    |
| ``residual_block.py`` | norm -> temporal block -> norm -> MLP, with residuals              |
| ``backbone.py``       | ``GriffinBackbone``: call / init_cache / prefill / decode          |
"""

from .backbone import GriffinBackbone
from .config import ATTENTION, GRIFFIN_PRESETS, RECURRENT, GriffinConfig, griffin_block_types

__all__ = ["GriffinBackbone", "GriffinConfig", "GRIFFIN_PRESETS", "RECURRENT", "ATTENTION", "griffin_block_types"]
