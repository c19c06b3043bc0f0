"""Write a gemma_kit model as a keras-hub preset: ``model.save_preset(folder)``.

    model.save_preset("my_gemma")                                    # gemma_kit -> keras-hub
    keras_hub.models.Gemma3CausalLM.from_preset("my_gemma")          # or GemmaCausalLM for Gemma 1/2
                                                                     # or Gemma4CausalLM (keras_hub_gemma4.py)

We build keras-hub's own backbone (``GemmaBackbone`` for Gemma 1, CodeGemma and Gemma 2,
``Gemma3Backbone`` for Gemma 3, text only; Gemma 4's ``Gemma4Backbone`` is ``keras_hub_gemma4.py``)
from our config, copy our weights into it, wrap it in a ``CausalLM`` with keras-hub's tokenizer and
preprocessor, and let keras-hub's ``save_to_preset`` write the folder (config.json, model.weights.h5,
tokenizer assets, task.json...). The weight mapping is the loader's (``loaders/keras_hub.py``) run backwards.

Not every config has a keras-hub twin: keras-hub hard-codes the layer patterns (Gemma 2: even
layers local; Gemma 3: 5 local then 1 global), the RoPE bases (10k; Gemma 3: 10k local, 1M global),
and its decoder blocks scale queries by ``head_dim ** -0.5`` whatever ``query_head_dim_normalize``
says. A config it would run differently from us raises ``ValueError`` instead of writing a preset
that keras-hub would silently get wrong.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from ..models.gemma.config import GLOBAL, gemma2_layer_types, gemma3_layer_types
from ..models.gemma4.config import Gemma4Config
from ..loaders.keras_hub import KERAS_HUB_NAMES, QKV, keras_hub_shape
from . import keras_hub_gemma4


def _check_representable(config) -> str:
    """The keras-hub backbone class for ``config``, or ValueError saying what keras-hub cannot express."""
    problems = []
    all_global = all(t == GLOBAL for t in config.layer_types)
    gemma3 = config.use_qk_norm or config.rope_base_global != 10_000.0     # QK-norm or a 1M global base
    if config.query_pre_attn_scalar != config.head_dim:
        problems.append(f"query_pre_attn_scalar={config.query_pre_attn_scalar} differs from head_dim="
                        f"{config.head_dim} (keras-hub's decoder blocks always scale queries by head_dim ** -0.5)")
    if gemma3:
        expected = "5 local layers then 1 global (or all global)"
        if not (all_global or tuple(config.layer_types) == gemma3_layer_types(config.num_layers)):
            problems.append(f"layer_types must be {expected} for keras-hub's Gemma3Backbone")
        if config.rope_base_global != 1_000_000.0 or (not all_global and config.rope_base_local != 10_000.0):
            problems.append(f"RoPE bases {config.rope_base_local:g} (local) / {config.rope_base_global:g} (global): "
                            "keras-hub's Gemma3Backbone hard-codes 10,000 / 1,000,000")
    else:
        if not (all_global or tuple(config.layer_types) == gemma2_layer_types(config.num_layers)):
            problems.append("layer_types must be all global (Gemma 1) or alternate local, global (Gemma 2) "
                            "for keras-hub's GemmaBackbone")
        if config.rope_base_global != 10_000.0 or config.rope_scaling_factor != 1.0:
            problems.append(f"RoPE base {config.rope_base_global:g} with scaling {config.rope_scaling_factor:g}: "
                            "keras-hub's GemmaBackbone hard-codes base 10,000 and no scaling")
    if problems:
        raise ValueError(f"{config.name}: keras-hub cannot represent this config: " + "; ".join(problems))
    return "Gemma3Backbone" if gemma3 else "GemmaBackbone"


def keras_hub_backbone(config, dtype="float32"):
    """An (untrained) keras-hub backbone with our ``config``'s architecture."""
    if isinstance(config, Gemma4Config):
        return keras_hub_gemma4.keras_hub_gemma4_backbone(config, dtype)
    import keras_hub

    class_name = _check_representable(config)
    windowed = any(t != GLOBAL for t in config.layer_types)
    common = dict(
        vocabulary_size=config.vocab_size, num_layers=config.num_layers, num_query_heads=config.num_query_heads,
        num_key_value_heads=config.num_kv_heads, hidden_dim=config.hidden_dim, head_dim=config.head_dim,
        query_head_dim_normalize=True, use_post_ffw_norm=config.use_post_norms,
        use_post_attention_norm=config.use_post_norms, attention_logit_soft_cap=config.attn_soft_cap,
        final_logit_soft_cap=config.final_soft_cap, use_sliding_window_attention=windowed,
        sliding_window_size=config.sliding_window or 4096, layer_norm_epsilon=config.rms_norm_eps, dtype=dtype)
    if class_name == "GemmaBackbone":     # keras-hub's Gemma 1/2 intermediate_dim is both GeGLU branches
        return keras_hub.models.GemmaBackbone(intermediate_dim=2 * config.intermediate_dim, **common)
    return keras_hub.models.Gemma3Backbone(
        intermediate_dim=config.intermediate_dim, image_size=896, vision_encoder=None,   # text only
        use_query_key_norm=config.use_qk_norm, local_rope_scaling_factor=1.0,
        global_rope_scaling_factor=config.rope_scaling_factor, **common)


def copy_weights_to_keras_hub(backbone, theirs) -> None:
    """Copy a GemmaBackbone's weights into a keras-hub backbone of the same architecture."""
    config = backbone.config
    if isinstance(config, Gemma4Config):
        return keras_hub_gemma4.copy_weights_to_keras_hub_gemma4(backbone, theirs)
    targets = {"token_embedding.embeddings": theirs.token_embedding.embeddings,
               "final_norm.scale": theirs.layer_norm.scale}
    for i, block in enumerate(theirs.transformer_layers):
        for rest, attribute in KERAS_HUB_NAMES.items():
            layer = block
            for name in attribute.split("/"):
                layer = getattr(layer, name, None)
            if layer is not None:
                targets[f"block_{i}/{rest}"] = layer.kernel if rest.endswith("kernel") else layer.scale
    ours = backbone.weights_by_path()
    if set(ours) != set(targets) or len(theirs.weights) != len(ours):
        raise ValueError(f"keras-hub's backbone has {len(theirs.weights)} weights, ours {len(ours)}; only ours: "
                         f"{sorted(set(ours) - set(targets))}, only theirs: {sorted(set(targets) - set(ours))}")
    for weight_path, variable in ours.items():
        value = np.asarray(ops.convert_to_numpy(ops.cast(variable, "float32")))
        shape = keras_hub_shape(weight_path, config, variable.shape)
        if weight_path.endswith(QKV):      # (hidden, heads * head_dim) -> (heads, hidden, head_dim)
            value = value.reshape(shape[1], shape[0], shape[2]).transpose(1, 0, 2)
        value = value.reshape(shape)       # attention output: (heads * head_dim, hidden) -> (heads, head_dim, hidden)
        target = targets[weight_path]
        if tuple(target.shape) != shape:
            raise ValueError(f"keras-hub's {target.path} has shape {tuple(target.shape)}, ours gives {shape}")
        target.assign(value.astype(target.dtype))


def keras_hub_causal_lm(model):
    """A keras-hub ``GemmaCausalLM`` / ``Gemma3CausalLM`` / ``Gemma4CausalLM`` holding a copy of a
    GemmaModel's weights."""
    if isinstance(model.config, Gemma4Config):
        return keras_hub_gemma4.keras_hub_gemma4_causal_lm(model)
    import keras_hub

    backbone = keras_hub_backbone(model.config, dtype=model.backbone.dtype_policy.name)
    copy_weights_to_keras_hub(model.backbone, backbone)
    proto = model.tokenizer.model_proto.SerializeToString()
    models = keras_hub.models
    if isinstance(backbone, models.Gemma3Backbone):
        tokenizer = models.Gemma3Tokenizer(proto=proto, has_vision_tokens=False)
        preprocessor = models.Gemma3CausalLMPreprocessor(tokenizer=tokenizer, image_converter=None)
        return models.Gemma3CausalLM(preprocessor=preprocessor, backbone=backbone)
    preprocessor = models.GemmaCausalLMPreprocessor(tokenizer=models.GemmaTokenizer(proto=proto))
    return models.GemmaCausalLM(preprocessor=preprocessor, backbone=backbone)


def save_preset(model, folder) -> str:
    """Write ``model`` (a GemmaModel) as a keras-hub preset folder; returns the folder."""
    import os

    keras_hub_causal_lm(model).save_to_preset(os.fspath(folder))
    return os.fspath(folder)
