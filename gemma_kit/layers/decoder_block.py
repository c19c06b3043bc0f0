"""One Gemma transformer block: attention then GeGLU MLP, each wrapped in norms.

    x = x + post_attention_norm(attention(pre_attention_norm(x)))
    x = x + post_ffw_norm(mlp(pre_ffw_norm(x)))

Gemma 1 has only the two "pre" norms; Gemma 2 and 3 add the "post" norms
(``config.use_post_norms``), which keep each residual update small.
"""

import keras

from ..config import LOCAL
from .attention import GemmaAttention
from .mlp import GeGLU
from .rms_norm import RMSNorm


@keras.saving.register_keras_serializable(package="gemma_kit")
class DecoderBlock(keras.layers.Layer):
    def __init__(self, config, layer_index: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.config, self.layer_index = config, layer_index
        self.layer_type = config.layer_types[layer_index]        # "local" or "global"
        eps, policy = config.rms_norm_eps, self.dtype_policy
        self.pre_attention_norm = RMSNorm(eps, name="pre_attention_norm", dtype=policy)
        self.attention = GemmaAttention(
            config.hidden_dim, config.num_query_heads, config.num_kv_heads, config.head_dim,
            query_pre_attn_scalar=config.query_pre_attn_scalar, soft_cap=config.attn_soft_cap,
            use_qk_norm=config.use_qk_norm, rope_base=config.rope_base(layer_index),
            rope_scaling_factor=1.0 if self.layer_type == LOCAL else config.rope_scaling_factor,
            rms_norm_eps=eps, kernel_initializer=kernel_initializer, name="attention", dtype=policy)
        self.pre_ffw_norm = RMSNorm(eps, name="pre_ffw_norm", dtype=policy)
        self.mlp = GeGLU(config.hidden_dim, config.intermediate_dim, kernel_initializer=kernel_initializer,
                         name="mlp", dtype=policy)
        if config.use_post_norms:
            self.post_attention_norm = RMSNorm(eps, name="post_attention_norm", dtype=policy)
            self.post_ffw_norm = RMSNorm(eps, name="post_ffw_norm", dtype=policy)

    def build(self, input_shape):                    # (batch, seq, hidden_dim)
        for norm in ("pre_attention_norm", "pre_ffw_norm", "post_attention_norm", "post_ffw_norm"):
            if hasattr(self, norm):
                getattr(self, norm).build(input_shape)
        self.attention.build(input_shape)
        self.mlp.build(input_shape)

    def call(self, x, positions, mask, cache=None, write_index=None, return_probs=False):
        out = self.attention(self.pre_attention_norm(x), positions, mask, cache=cache,
                             write_index=write_index, return_probs=return_probs)
        attended, new_cache = out[0], out[1]
        if self.config.use_post_norms:
            attended = self.post_attention_norm(attended)
        x = x + attended
        update = self.mlp(self.pre_ffw_norm(x))
        if self.config.use_post_norms:
            update = self.post_ffw_norm(update)
        x = x + update                                   # (batch, seq, hidden_dim)
        return (x, new_cache) + tuple(out[2:])

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "layer_index": self.layer_index}

    @classmethod
    def from_config(cls, config):
        from ..config import GemmaConfig
        config = dict(config)
        return cls(GemmaConfig.from_dict(config.pop("config")), **config)
