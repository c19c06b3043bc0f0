"""The Gemma 4 text decoder: Gemma's skeleton, Gemma 4's blocks, and per-layer embeddings.

    x = embed(token_ids) * sqrt(hidden_dim)          # (batch, seq, hidden_dim)
    ple = per_layer_embedding(token_ids, x)          # (batch, seq, layers, ple_dim), E2B/E4B only
    for i, block in enumerate(blocks):               # local or global; the last layers borrow keys/values
        x = block(x, per_layer_input=ple[:, :, i])
    logits = 30 * tanh(final_norm(x) @ embed.T / 30) # tied output, soft-capped as in Gemma 2

Put this file beside ``models/gemma/backbone.py``: the skeleton (forward pass,
masks, cache, KV sharing between blocks) is ``nn/backbone.py``'s; what Gemma 4
brings is its block (``block.py``), its norm style and the PLE layer
(``per_layer_embeddings.py``).
"""

import keras

from ...nn.backbone import LanguageModelBackbone
from .block import Gemma4Block
from .config import Gemma4Config
from .per_layer_embeddings import PerLayerEmbedding


@keras.saving.register_keras_serializable(package="gemma_kit")
class Gemma4Backbone(LanguageModelBackbone):
    config_class = Gemma4Config
    capture_keys = ("attention", "experts")      # attention probabilities; MoE routing weights

    def __init__(self, config: Gemma4Config, dtype=None, random_init: bool = True, **kwargs):
        super().__init__(config, width=config.hidden_dim, embedding_scale=config.hidden_dim ** 0.5,
                         output_soft_cap=config.final_soft_cap, embedding_stddev=0.02,
                         norm_eps=config.rms_norm_eps, block_class=Gemma4Block, norm_unit_offset=False,
                         dtype=dtype, random_init=random_init, **kwargs)

    def make_per_layer_embedding(self, random_init: bool):
        c = self.config
        if not c.per_layer_input_dim:
            return None
        return PerLayerEmbedding(
            c.per_layer_vocab_size or c.vocab_size, c.num_layers, c.per_layer_input_dim, c.hidden_dim,
            c.rms_norm_eps, name="per_layer_embedding", dtype=self.dtype_policy,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02) if random_init else "zeros",
            kernel_initializer="glorot_uniform" if random_init else "zeros")
