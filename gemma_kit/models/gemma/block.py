"""One Gemma transformer block: attention then GeGLU MLP, each wrapped in norms.

    x = x + post_attention_norm(attention(pre_attention_norm(x)))
    x = x + post_ffw_norm(mlp(pre_ffw_norm(x)))

Gemma 1 has only the two "pre" norms; Gemma 2 and 3 add the "post" norms
(``config.use_post_norms``), which keep each residual update small. A block is
"local" (sliding window: a query sees the last ``sliding_window`` keys, itself
included) or "global" (every earlier key): only its mask and its cache size differ.
"""

import keras

from ...nn import kv_cache
from ...nn.geglu import GeGLU
from ...nn.rms_norm import RMSNorm
from .attention import GemmaAttention
from .config import LOCAL, GemmaConfig


@keras.saving.register_keras_serializable(package="gemma_kit")
class DecoderBlock(keras.layers.Layer):
    attends = True                                               # every Gemma block has attention

    def __init__(self, config, layer_index: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.config, self.layer_index = config, layer_index
        self.layer_type = config.layer_types[layer_index]        # "local" or "global"
        # The window rule (nn/masks.py): `sliding_window` keys, the query's own included.
        self.lookback = config.sliding_window - 1 if self.layer_type == LOCAL else None
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

    def init_cache(self, batch_size, max_length):
        """A ``(keys, values)`` ring: a slot per step (global), or the window's worth (local)."""
        c = self.config
        slots = min(c.sliding_window, max_length) if self.layer_type == LOCAL else max_length
        return kv_cache.empty(batch_size, slots, c.num_kv_heads, c.head_dim, self.compute_dtype)

    def call(self, x, positions, mask, cache=None, time=None, return_internals=False):
        """x: (batch, seq, hidden_dim). Returns ``(x, new_cache)``, plus ``{"attention": probs}``
        when ``return_internals`` (``gemma_kit.visualize``)."""
        attended, new_cache, *probs = self.attention(self.pre_attention_norm(x), positions, mask, cache=cache,
                                                     time=time, return_probs=return_internals)
        if self.config.use_post_norms:
            attended = self.post_attention_norm(attended)
        x = x + attended
        update = self.mlp(self.pre_ffw_norm(x))
        if self.config.use_post_norms:
            update = self.post_ffw_norm(update)
        x = x + update                                   # (batch, seq, hidden_dim)
        return (x, new_cache) + tuple({"attention": p} for p in probs)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "layer_index": self.layer_index}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(GemmaConfig.from_dict(config.pop("config")), **config)
