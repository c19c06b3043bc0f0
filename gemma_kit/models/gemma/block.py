"""One Gemma transformer block: attention then GeGLU MLP, each wrapped in norms.

    x = x + post_attention_norm(attention(pre_attention_norm(x)))
    x = x + post_ffw_norm(mlp(pre_ffw_norm(x)))

Gemma 1 has only the two "pre" norms; Gemma 2 and 3 add the "post" norms
(``config.use_post_norms``), which keep each residual update small. A block is
"local" (sliding window: a query sees the last ``sliding_window`` keys, itself
included) or "global" (every earlier key): only its mask and its cache size differ.

Under a float16 policy ``x``, the residual stream, is float32 (``nn/precision.py``):
attention and the MLP run in float16 on the normed stream, and each update is cast
to float32 before its post-norm and the addition.
"""

import keras
from keras import ops

from ...nn import kv_cache
from ...nn.geglu import GeGLU
from ...nn.precision import autocast_inputs
from ...nn.rms_norm import RMSNorm
from .attention import GemmaAttention
from .config import LOCAL, GemmaConfig


@keras.saving.register_keras_serializable(package="gemma_kit")
class DecoderBlock(keras.layers.Layer):
    attends = True                                               # every Gemma block has attention
    kv_sharing = None

    def __init__(self, config, layer_index: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(autocast=autocast_inputs(kwargs.get("dtype")), **kwargs)   # x: the residual stream
        self.config, self.layer_index = config, layer_index
        self.layer_type = config.layer_types[layer_index]        # "local" or "global"
        # The window rule (nn/masks.py): `sliding_window` keys, the query's own included.
        self.lookback = config.sliding_window - 1 if self.layer_type == LOCAL else None
        self.kv_sharing = config.kv_sharing(layer_index)         # None, or Gemma 4's "store" / "reuse"
        policy = self.dtype_policy
        self.pre_attention_norm = self.norm("pre_attention_norm")
        self.attention = GemmaAttention(
            config.hidden_dim, config.num_query_heads, config.kv_heads_of(layer_index),
            config.head_dim_of(layer_index), query_pre_attn_scalar=config.query_pre_attn_scalar,
            soft_cap=config.attn_soft_cap, use_qk_norm=config.use_qk_norm, rope_base=config.rope_base(layer_index),
            rope_scaling_factor=1.0 if self.layer_type == LOCAL else config.rope_scaling_factor,
            rms_norm_eps=config.rms_norm_eps, norm_unit_offset=config.rms_norm_unit_offset,
            value_norm=config.value_norm,                        # Gemma 4 normalises its values
            keys_are_values=config.keys_are_values(layer_index), reuses_kv=self.kv_sharing == "reuse",
            rotated_fraction=config.rope_fraction(layer_index),
            kernel_initializer=kernel_initializer, name="attention", dtype=policy)
        self.pre_ffw_norm = self.norm("pre_ffw_norm")
        self.mlp = GeGLU(config.hidden_dim, config.mlp_dim_of(layer_index), kernel_initializer=kernel_initializer,
                         name="mlp", dtype=policy)
        if config.use_post_norms:
            self.post_attention_norm = self.norm("post_attention_norm")
            self.post_ffw_norm = self.norm("post_ffw_norm")

    def norm(self, name, **options):
        """An RMSNorm in the config's style: ``1 + scale`` (Gemma 1-3) or ``scale`` (Gemma 4)."""
        return RMSNorm(self.config.rms_norm_eps, unit_offset=self.config.rms_norm_unit_offset, name=name,
                       dtype=self.dtype_policy, **options)

    def build(self, input_shape):                    # (batch, seq, hidden_dim)
        for norm in ("pre_attention_norm", "pre_ffw_norm", "post_attention_norm", "post_ffw_norm"):
            if hasattr(self, norm):
                getattr(self, norm).build(input_shape)
        self.attention.build(input_shape)
        self.mlp.build(input_shape)

    def init_cache(self, batch_size, max_length, chunk=1):
        """A ``(keys, values)`` ring: a slot per step (global), or the window's worth (local).
        A layer that borrows another's keys (Gemma 4's KV sharing) keeps none: ``()``.

        ``chunk > 1``: chunks of that length may be rolled back (``speculative.py``), so a local
        ring keeps ``sliding_window + chunk - 1`` slots: the mask's window still limits what a
        query sees, and the slots a rejected chunk overwrote hold steps outside that window."""
        c, i = self.config, self.layer_index
        if self.kv_sharing == "reuse":
            return ()
        slots = min(c.sliding_window + chunk - 1, max_length) if self.layer_type == LOCAL else max_length
        return kv_cache.empty(batch_size, slots, c.kv_heads_of(i), c.head_dim_of(i), self.compute_dtype)

    def attend(self, x, positions, mask, cache, time, return_internals, shared_kv):
        """``x + post_attention_norm(attention(pre_attention_norm(x)))`` and what the attention returns."""
        attended, new_cache, *rest = self.attention(
            self.pre_attention_norm(x), positions, mask, cache=cache, time=time, return_probs=return_internals,
            shared_kv=shared_kv, return_kv=self.kv_sharing == "store")
        attended = ops.cast(attended, x.dtype)                   # float16 -> the stream's float32 (float16 models)
        if self.config.use_post_norms:
            attended = self.post_attention_norm(attended)
        return x + attended, new_cache, rest                     # rest: [(keys, values)] if "store", [probs]

    def feed_forward(self, x):
        """The MLP's residual update ``post_ffw_norm(mlp(pre_ffw_norm(x)))`` (batch, seq, hidden_dim)."""
        update = ops.cast(self.mlp(self.pre_ffw_norm(x)), x.dtype)              # (batch, seq, hidden_dim)
        return self.post_ffw_norm(update) if self.config.use_post_norms else update

    def call(self, x, positions, mask, cache=None, time=None, return_internals=False, shared_kv=None):
        """x: (batch, seq, hidden_dim). Returns ``(x, new_cache)``, then the ``(keys, values)`` it read
        when it lends them (``kv_sharing == "store"``), then ``{"attention": probs}`` when
        ``return_internals`` (``gemma_kit.visualize``)."""
        x, new_cache, rest = self.attend(x, positions, mask, cache, time, return_internals, shared_kv)
        x = x + self.feed_forward(x)                     # (batch, seq, hidden_dim)
        return self.outputs(x, new_cache, rest)

    def outputs(self, x, new_cache, rest, **internals):
        """``(x, new_cache)``, the lent ``(keys, values)`` if any, the internals dict if asked."""
        kv = rest[:1] if self.kv_sharing == "store" else []
        return (x, new_cache, *kv) + tuple({"attention": probs, **internals} for probs in rest[len(kv):])

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "layer_index": self.layer_index}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(GemmaConfig.from_dict(config.pop("config")), **config)
