"""The Griffin / RecurrentGemma model: embedding, residual blocks, tied output.

    x = embed(token_ids) * bfloat16(sqrt(width))     # (batch, seq, width); the scale rounded as in training
    for block in blocks: x = block(x)                # recurrent or local-attention residual blocks (block.py)
    logits = final_norm(x) @ embed.T                 # (batch, seq, vocab), tied weights, float32
    logits = 30 * tanh(logits / 30)                  # logits_soft_cap

The skeleton (the forward pass, masks, the cache, ``call`` / ``prefill`` /
``decode``) is every family's and lives in ``nn/backbone.py``; Griffin brings its
numbers and its ``ResidualBlock``. The cache has a *fixed size*: per recurrent
block the RG-LRU state and the last 3 convolution inputs, per attention block a
ring buffer of ``attention_window_size`` keys and values.

Positions and documents. ``segment_pos`` (``hidden_states``' input, or the
positions of a left-padded prompt) is each token's position in its own
document, as in the official code: 0 marks a document start, where the RG-LRU
and the convolution reset and attention stops looking back.

Names follow DeepMind's ``recurrentgemma/jax/griffin.py`` (``Griffin``).
"""

import keras

from ...nn.backbone import LanguageModelBackbone
from .block import ResidualBlock
from .config import GriffinConfig


@keras.saving.register_keras_serializable(package="gemma_kit")
class GriffinBackbone(LanguageModelBackbone):
    config_class = GriffinConfig
    # Attention blocks' probabilities, then the RG-LRU's gates, decay, input and states (rg_lru.py).
    capture_keys = ("attention", "input_gate", "a_gate", "decay", "lru_input", "lru_state")
    # The parallel scan is dozens of tiny operations, each of which eager JAX would compile on its own
    # (seconds per new sequence length): the capture pass runs compiled instead.
    compile_capture = True

    def __init__(self, config: GriffinConfig, dtype=None, random_init: bool = True, **kwargs):
        super().__init__(config, width=config.width,
                         embedding_scale=config.embedding_scale,           # bfloat16(sqrt(width)), or 1
                         output_soft_cap=config.logits_soft_cap,           # 30
                         embedding_stddev=config.width ** -0.5, norm_eps=1e-6, block_class=ResidualBlock,
                         dtype=dtype, random_init=random_init, **kwargs)
