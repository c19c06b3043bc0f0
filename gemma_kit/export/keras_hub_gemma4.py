"""Write a Gemma 4 model as a keras-hub preset: ``model.save_preset(folder)`` for a ``Gemma4Config``.

    model.save_preset("my_gemma4")                                   # gemma_kit -> keras-hub
    keras_hub.models.Gemma4CausalLM.from_preset("my_gemma4")

We build keras-hub's ``Gemma4Backbone`` (text only: no vision or audio encoder) from our
config, copy our weights into it with the loader's map run backwards
(``loaders/keras_hub_gemma4.py``), and wrap it in a ``Gemma4CausalLM`` with keras-hub's
tokenizer and preprocessor; ``export/keras_hub.py`` calls ``save_to_preset``.

keras-hub hard-codes some of what ``Gemma4Config`` leaves open: attention scale 1, QK-norm,
post norms, norms that multiply by ``scale``; and "keys are values" on global layers exactly
when ``num_global_key_value_heads`` is set. A config it would run differently from us raises
``ValueError`` naming the field, instead of writing a preset keras-hub would get wrong.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from ..loaders import keras_hub_gemma4 as layout
from ..models.gemma.config import GLOBAL, LOCAL


def _rotated_pairs(fraction: float, head_dim: int):
    """(ours, keras-hub's) number of rotated channel pairs for "proportional" RoPE."""
    if fraction >= 1.0:
        return head_dim // 2, head_dim // 2
    raw = int(fraction * head_dim)
    return int(fraction * head_dim // 2), max(2, raw - raw % 2) // 2


def check_representable(config) -> None:
    """ValueError naming each field of ``config`` keras-hub's Gemma4Backbone cannot express."""
    global_dim = config.global_head_dim or config.head_dim
    ours, theirs = _rotated_pairs(config.rope_fraction_global, global_dim)
    problems = [why for bad, why in [
        (config.query_pre_attn_scalar != 1.0, f"query_pre_attn_scalar={config.query_pre_attn_scalar} (keras-hub's "
                                              "Gemma 4 attention always scales scores by 1)"),
        (not config.use_qk_norm, "use_qk_norm=False (keras-hub's Gemma 4 always has QK-norm)"),
        (not config.use_post_norms, "use_post_norms=False (keras-hub's Gemma 4 always has post norms)"),
        (config.rms_norm_unit_offset, "rms_norm_unit_offset=True (keras-hub's Gemma 4 norms multiply by scale)"),
        (config.num_global_kv_heads is not None and not config.attention_k_eq_v,
         f"num_global_kv_heads={config.num_global_kv_heads} without attention_k_eq_v (keras-hub turns K = V on "
         "whenever num_global_key_value_heads is set)"),
        (GLOBAL in config.layer_types and ours != theirs,
         f"rope_fraction_global={config.rope_fraction_global} rotates {ours} pairs of a {global_dim}-wide head; "
         f"keras-hub would rotate {theirs}"),
    ] if bad]
    if problems:
        raise ValueError(f"{config.name}: keras-hub cannot represent this config: " + "; ".join(problems))


def keras_hub_gemma4_backbone(config, dtype="float32"):
    """An (untrained) keras-hub ``Gemma4Backbone``, text only, with our ``config``'s architecture."""
    import keras_hub

    check_representable(config)
    keys_are_values = config.attention_k_eq_v
    return keras_hub.models.Gemma4Backbone(
        vocabulary_size=config.vocab_size, image_size=None, num_layers=config.num_layers,
        num_query_heads=config.num_query_heads, num_key_value_heads=config.num_kv_heads,
        hidden_dim=config.hidden_dim, intermediate_dim=config.intermediate_dim, head_dim=config.head_dim,
        global_head_dim=config.global_head_dim, attention_logit_soft_cap=config.attn_soft_cap,
        final_logit_soft_cap=config.final_soft_cap, use_sliding_window_attention=True,
        sliding_window_size=config.sliding_window or 512,
        layer_types=[{LOCAL: "sliding_attention", GLOBAL: "full_attention"}[t] for t in config.layer_types],
        local_rope_wavelength=config.rope_base_local, global_rope_wavelength=config.rope_base_global,
        local_rope_scaling_factor=1.0, global_rope_scaling_factor=config.rope_scaling_factor,
        global_rope_partial_rotary_factor=config.rope_fraction_global, layer_norm_epsilon=config.rms_norm_eps,
        num_kv_shared_layers=config.num_kv_shared_layers, use_double_wide_mlp=config.use_double_wide_mlp,
        num_global_key_value_heads=config.global_kv_heads if keys_are_values else None,
        hidden_size_per_layer_input=config.per_layer_input_dim,
        vocab_size_per_layer_input=config.per_layer_vocab_size if config.per_layer_input_dim else None,
        enable_moe_block=bool(config.num_experts), num_experts=config.num_experts or None,
        expert_intermediate_dim=config.expert_intermediate_dim or None,
        num_experts_per_token=config.num_experts_per_token or 8, dtype=dtype)


def _attribute(obj, chain: str):
    for name in filter(None, chain.split(".")):
        obj = getattr(obj, name)
    return obj


def keras_hub_variables(config, theirs) -> dict:
    """{our weight path: the keras-hub variable that holds it} for a keras-hub ``Gemma4Backbone``."""
    top = {**layout.TOP, **(layout.PLE if config.per_layer_input_dim else {})}
    targets = {ours: getattr(getattr(theirs, layer), weight) for ours, (_, layer, weight) in top.items()}
    for i, block in enumerate(theirs.transformer_layers):
        for rest, (layer, weight, _) in layout.block_weights(config, i).items():
            targets[layout.our_path(i, rest)] = getattr(_attribute(block, layer), weight)
    return targets


def copy_weights_to_keras_hub_gemma4(backbone, theirs) -> None:
    """Copy a Gemma4Backbone's weights into a keras-hub ``Gemma4Backbone`` of the same architecture."""
    config, ours = backbone.config, backbone.weights_by_path()
    targets = keras_hub_variables(config, theirs)
    if set(ours) != set(targets) or len(theirs.weights) != len(ours):
        raise ValueError(f"keras-hub's backbone has {len(theirs.weights)} weights, ours {len(ours)}; only ours: "
                         f"{sorted(set(ours) - set(targets))}, only theirs: {sorted(set(targets) - set(ours))}")
    for path, variable in ours.items():
        value = np.asarray(ops.convert_to_numpy(ops.cast(variable, "float32")))
        shape, target = layout.keras_hub_shape(path, config, variable.shape), targets[path]
        if tuple(target.shape) != shape:
            raise ValueError(f"keras-hub's {target.path} has shape {tuple(target.shape)}, ours gives {shape}")
        target.assign(layout.to_theirs(path, value, shape).astype(target.dtype))


def keras_hub_gemma4_causal_lm(model):
    """A keras-hub ``Gemma4CausalLM`` (text only) holding a copy of a Gemma 4 GemmaModel's weights."""
    import keras_hub

    models = keras_hub.models
    backbone = keras_hub_gemma4_backbone(model.config, dtype=model.backbone.dtype_policy.name)
    copy_weights_to_keras_hub_gemma4(model.backbone, backbone)
    tokenizer = models.Gemma4Tokenizer(proto=model.tokenizer.model_proto.SerializeToString(),
                                       has_vision_tokens=False, has_video_tokens=False)
    preprocessor = models.Gemma4CausalLMPreprocessor(tokenizer=tokenizer)
    return models.Gemma4CausalLM(preprocessor=preprocessor, backbone=backbone)
