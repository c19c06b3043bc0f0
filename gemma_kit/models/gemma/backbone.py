"""The Gemma decoder (Gemma 1, 2, 3 and CodeGemma): token embedding, decoder blocks, tied output.

    x = embed(token_ids) * sqrt(hidden_dim)          # (batch, seq, hidden_dim)
    for block in blocks: x = block(x)                # local or global attention + MLP (block.py)
    logits = final_norm(x) @ embed.T                 # (batch, seq, vocab), tied weights
    logits = final_soft_cap * tanh(logits / final_soft_cap)   (Gemma 2)

The skeleton (the forward pass, masks, the cache, ``call`` / ``prefill`` /
``decode``) is every family's and lives in ``nn/backbone.py``; Gemma brings its
numbers and its ``DecoderBlock``. Put this file beside
``models/griffin/backbone.py`` to see what differs.
"""

import keras

from ...nn.backbone import LanguageModelBackbone
from .block import DecoderBlock
from .config import GemmaConfig


@keras.saving.register_keras_serializable(package="gemma_kit")
class GemmaBackbone(LanguageModelBackbone):
    config_class = GemmaConfig

    def __init__(self, config: GemmaConfig, dtype=None, random_init: bool = True, **kwargs):
        super().__init__(config, width=config.hidden_dim,
                         embedding_scale=config.hidden_dim ** 0.5,         # cast to the compute dtype
                         output_soft_cap=config.final_soft_cap,             # Gemma 2: 30
                         embedding_stddev=0.02, norm_eps=config.rms_norm_eps, block_class=DecoderBlock,
                         norm_unit_offset=config.rms_norm_unit_offset,
                         dtype=dtype, random_init=random_init, **kwargs)
