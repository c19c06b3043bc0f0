"""RecurrentGemma (Griffin, De et al. 2024) in Keras 3: RG-LRU recurrences mixed with local attention.

The same file names as ``models/gemma/``, plus the recurrence's own, named as in
DeepMind's ``recurrentgemma`` package:

| file                  | concept                                                            |
|-----------------------|--------------------------------------------------------------------|
| ``config.py``         | ``GriffinConfig``, the parameter count                             |
| ``presets.py``        | the four official checkpoints' rows of the preset table            |
| ``attention.py``      | multi-query sliding-window attention, RoPE on half of each head    |
| ``block.py``          | norm -> temporal block -> norm -> MLP, with residuals              |
| ``backbone.py``       | ``GriffinBackbone``: the numbers and the block for ``nn/backbone.py`` |
| ``recurrent_block.py``| the two-branch recurrent block                                     |
| ``rg_lru.py``         | the RG-LRU recurrence and its parallel (associative) scan          |
| ``conv_1d.py``        | the short causal depthwise convolution                             |
"""

from .backbone import GriffinBackbone
from .config import ATTENTION, RECURRENT, GriffinConfig, griffin_block_types

__all__ = ["GriffinBackbone", "GriffinConfig", "RECURRENT", "ATTENTION", "griffin_block_types"]
