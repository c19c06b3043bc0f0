"""One Gemma 4 block: Gemma 3's block (``models/gemma/block.py``) plus three additions.

    x = x + post_attention_norm(attention(pre_attention_norm(x)))    # as Gemma 3
    m = mlp(pre_ffw_norm(x))                                         # as Gemma 3
    m = post_ffw_norm_dense(m) + post_ffw_norm_experts(experts(x))   # + mixture of experts (26B-A4B)
    x = x + post_ffw_norm(m)
    x = x + post_per_layer_norm(W_proj(gelu_tanh(W_gate(x)) * ple_i))   # + per-layer input (E2B, E4B)
    x = x * layer_scalar                                             # + a stored scalar per layer

The attention layer is Gemma 3's with Gemma 4's options turned on by the config
(value norm, keys as values, borrowed keys and values, partial RoPE: see
``models/gemma/attention.py``), and the norms multiply by ``scale``, not ``1 + scale``.

The per-layer input's gate reads the residual stream with no norm before it: under
a float16 policy, where the stream is float32 (``nn/precision.py``), its two small
projections compute in float32 (``residual_policy``).
"""

import keras
from keras import ops

from ...nn.int8 import Dense
from ...nn.precision import residual_policy
from ..gemma.block import DecoderBlock
from .config import Gemma4Config
from .moe import MixtureOfExperts


@keras.saving.register_keras_serializable(package="gemma_kit")
class Gemma4Block(DecoderBlock):
    def __init__(self, config: Gemma4Config, layer_index: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(config, layer_index, kernel_initializer=kernel_initializer, **kwargs)
        dense = dict(use_bias=False, kernel_initializer=kernel_initializer, dtype=residual_policy(self.dtype_policy))
        if config.num_experts:
            self.post_ffw_norm_dense = self.norm("post_ffw_norm_dense")
            self.pre_ffw_norm_experts = self.norm("pre_ffw_norm_experts")
            self.post_ffw_norm_experts = self.norm("post_ffw_norm_experts")
            self.experts = MixtureOfExperts(config.hidden_dim, config.num_experts, config.num_experts_per_token,
                                            config.expert_intermediate_dim, config.rms_norm_eps,
                                            kernel_initializer=kernel_initializer, name="experts",
                                            dtype=self.dtype_policy)
        if config.per_layer_input_dim:
            self.per_layer_gate = Dense(config.per_layer_input_dim, name="per_layer_gate", **dense)
            self.per_layer_projection = Dense(config.hidden_dim, name="per_layer_projection", **dense)
            self.post_per_layer_norm = self.norm("post_per_layer_norm")

    def build(self, input_shape):                                    # (batch, seq, hidden_dim)
        super().build(input_shape)
        for name in ("post_ffw_norm_dense", "pre_ffw_norm_experts", "post_ffw_norm_experts", "experts",
                     "per_layer_gate", "post_per_layer_norm"):
            if hasattr(self, name):
                getattr(self, name).build(input_shape)
        if self.config.per_layer_input_dim:
            self.per_layer_projection.build(tuple(input_shape[:-1]) + (self.config.per_layer_input_dim,))
        # A constant the checkpoint stores per layer (transformers: a buffer); not trained.
        self.layer_scalar = self.add_weight(name="layer_scalar", shape=(1,), initializer="ones", trainable=False)

    def feed_forward(self, x, routing=None):
        """The dense MLP's update, plus the experts' when the model has them (batch, seq, hidden_dim)."""
        update = ops.cast(self.mlp(self.pre_ffw_norm(x)), x.dtype)              # (batch, seq, hidden_dim)
        if self.config.num_experts:
            mixed, weights = self.experts(x, self.pre_ffw_norm_experts(x))
            update = self.post_ffw_norm_dense(update) + self.post_ffw_norm_experts(ops.cast(mixed, x.dtype))
            if routing is not None:
                routing.append(weights)                              # (batch, seq, experts)
        return self.post_ffw_norm(update)

    def call(self, x, positions, mask, cache=None, time=None, return_internals=False, shared_kv=None,
             per_layer_input=None):
        """As ``DecoderBlock.call``; ``per_layer_input``: this layer's PLE slice (batch, seq, per_layer_input_dim).
        The internals also hold ``"experts"``, the routing weights (batch, seq, experts), in an MoE model."""
        x, new_cache, rest = self.attend(x, positions, mask, cache, time, return_internals, shared_kv)
        routing = []
        x = x + self.feed_forward(x, routing)                        # (batch, seq, hidden_dim)
        if per_layer_input is not None:
            gate = ops.gelu(self.per_layer_gate(x), approximate=True)
            gated = gate * ops.cast(per_layer_input, gate.dtype)                         # (batch, seq, ple_dim)
            x = x + ops.cast(self.post_per_layer_norm(self.per_layer_projection(gated)), x.dtype)
        x = x * ops.cast(self.layer_scalar, x.dtype)
        return self.outputs(x, new_cache, rest, **({"experts": routing[0]} if routing else {}))

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(Gemma4Config.from_dict(config.pop("config")), **config)
