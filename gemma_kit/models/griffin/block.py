"""Griffin's residual block: temporal mixing, then a GeGLU MLP, each behind an RMSNorm.

    h   = x + temporal_block(temporal_pre_norm(x))      # recurrent block or local attention
    out = h + mlp_block(channel_pre_norm(h))

Temporal mixing moves information between time steps; the MLP ("channel
mixing") works on each step alone. The norms are Gemma's RMSNorm with
``(1 + scale)``. The MLP is Gemma's GeGLU (tanh GeLU) *with biases*; the official
code stores its two input branches as one tensor ``ffw_up.w`` (2, width, expanded),
gate first.

Under a float16 policy ``x`` is float32 (``nn/precision.py``), as in Gemma's block:
the temporal block and the MLP run in float16, and their updates are added in float32.

Names follow ``recurrentgemma/jax/modules.py`` (``ResidualBlock``, ``MLPBlock``).
"""

import keras
from keras import ops

from ...nn import kv_cache
from ...nn.geglu import GeGLU
from ...nn.precision import autocast_inputs
from ...nn.rms_norm import RMSNorm
from .attention import LocalAttentionBlock
from .config import ATTENTION, GriffinConfig
from .recurrent_block import RecurrentBlock


@keras.saving.register_keras_serializable(package="gemma_kit")
class MLPBlock(GeGLU):
    """``ffw_down(gelu_tanh(ffw_up[0](x)) * ffw_up[1](x))``, every projection with a bias."""

    def __init__(self, hidden_dim: int, intermediate_dim: int, use_bias: bool = True, **kwargs):
        super().__init__(hidden_dim, intermediate_dim, use_bias=use_bias, **kwargs)


@keras.saving.register_keras_serializable(package="gemma_kit")
class ResidualBlock(keras.layers.Layer):
    kv_sharing = None                                                # every block keeps its own state

    def __init__(self, config: GriffinConfig, block_index: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(autocast=autocast_inputs(kwargs.get("dtype")), **kwargs)   # x: the residual stream
        self.config, self.block_index = config, block_index
        self.layer_type = config.block_types[block_index]          # "recurrent" or "attention"
        self.attends = self.layer_type == ATTENTION
        # The window rule (nn/masks.py): the official code lets a query see `window` keys back, plus itself.
        self.lookback = config.attention_window_size
        policy, init = self.dtype_policy, kernel_initializer
        self.temporal_pre_norm = RMSNorm(1e-6, name="temporal_pre_norm", dtype=policy)
        if self.attends:
            self.attention_block = LocalAttentionBlock(config.width, config.num_heads,
                                                       config.attention_window_size, kernel_initializer=init,
                                                       name="attention_block", dtype=policy)
        else:
            self.recurrent_block = RecurrentBlock(config.width, config.lru_width, config.num_heads,
                                                  config.conv1d_temporal_width, kernel_initializer=init,
                                                  name="recurrent_block", dtype=policy)
        self.channel_pre_norm = RMSNorm(1e-6, name="channel_pre_norm", dtype=policy)
        self.mlp_block = MLPBlock(config.width, config.mlp_expanded_width, kernel_initializer=init,
                                  name="mlp_block", dtype=policy)

    @property
    def temporal_block(self):
        """The recurrent block or the attention block, whichever this residual block has."""
        return self.attention_block if self.attends else self.recurrent_block

    def build(self, input_shape):                          # (batch, seq, width)
        for layer in (self.temporal_pre_norm, self.temporal_block, self.channel_pre_norm, self.mlp_block):
            layer.build(input_shape)

    def init_cache(self, batch_size, max_length, chunk=1):
        """Attention: a ``(keys, values)`` ring of the window (or ``max_length`` if shorter), plus
        ``chunk - 1`` slots when chunks of that length may be rolled back by time (as Gemma's).
        Recurrent: ``(rg_lru_state, conv1d_state)``, (batch, lru_width) float32 and (batch, 3, lru_width);
        a state cannot be rolled back by time (``speculative.py`` keeps the state before the chunk)."""
        c = self.config
        if self.attends:
            return kv_cache.empty(batch_size, min(c.attention_window_size + chunk - 1, max_length), 1, c.head_dim,
                                  self.compute_dtype)
        return self.recurrent_block.init_cache(batch_size, self.compute_dtype)

    def call(self, x, positions, mask=None, cache=None, time=None, return_internals=False):
        """x: (batch, seq, width); positions: (batch, seq) int (RoPE positions, 0 = document start).

        mask: the attention mask (attention blocks only); cache, time: see the temporal blocks.
        Returns ``(out, new_cache)``; with ``return_internals`` (``gemma_kit.visualize``) a third
        item, a dict: the RG-LRU gates of a recurrent block, or ``{"attention": probs}``.
        """
        normed = self.temporal_pre_norm(x)
        if self.attends:
            mixed, cache, *probs = self.attention_block(normed, positions, mask, cache=cache, time=time,
                                                        return_probs=return_internals)
            internals = [{"attention": p} for p in probs]
        else:
            mixed, cache, *internals = self.recurrent_block(normed, positions, cache=cache,
                                                            return_gates=return_internals)
        h = x + ops.cast(mixed, x.dtype)                                      # float32 in a float16 model
        return (h + ops.cast(self.mlp_block(self.channel_pre_norm(h)), h.dtype), cache) + tuple(internals)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "block_index": self.block_index}
