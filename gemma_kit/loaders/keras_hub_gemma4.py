"""Gemma 4 in a keras-hub preset: ``Gemma4Backbone``'s ``config.json`` <-> ``Gemma4Config``, and its weights.

keras-hub's ``Gemma4Backbone`` (``keras_hub/src/models/gemma4/``) is the text decoder plus,
in every real preset, a vision encoder (and an audio encoder in E2B/E4B). We read the
decoder and leave the encoders' tensors alone; ``export/keras_hub_gemma4.py`` runs this
map backwards.

config.json field (keras-hub)              -> Gemma4Config field
    intermediate_dim                          intermediate_dim (one GeGLU branch, as transformers)
    layer_types, or sliding_window_pattern    layer_types (keras-hub does *not* force the last layer global)
    global_head_dim                           global_head_dim
    num_global_key_value_heads                num_global_kv_heads, and attention_k_eq_v: keras-hub turns
                                              K = V on exactly when this field is set
    local/global_rope_wavelength              rope_base_local/global (None: 10,000 / 1,000,000)
    global_rope_partial_rotary_factor         rope_fraction_global
    hidden_size_per_layer_input ...           per_layer_input_dim, per_layer_vocab_size, experts, ...
    (not in config.json)                      max_sequence_length: 256K for the K = V models (26B A4B,
                                              31B), else 128K (E2B, E4B)

Refused, naming the field: ``use_bidirectional_attention`` / ``is_embedding_model`` (encoders),
``use_sliding_window_attention=false``, a scaled local RoPE, a local last layer, KV-shared
layers with no earlier layer of their type. Left alone: ``use_vision_bidirectional_attention``
(image tokens only), ``dropout``, ``image_size``, ``query_head_dim_normalize`` (unused by Gemma 4).

Weights: keras-hub's layers are stored by attribute name (``loaders/keras_hub.py``), block
``i`` under ``layers/gemma4_text_decoder_block_<i>`` (block 0 without the suffix); the
router's ``per_dim_scale`` is our ``router_scale``. Layouts to undo: q/k/v kernels are
``EinsumDense`` ``(heads, hidden, head_dim)`` and the output ``(heads, head_dim, hidden)``
(ours: ``(hidden, heads * head_dim)``, ``(heads * head_dim, hidden)``); ``layer_scalar``
is a scalar (ours: shape (1,)). Experts are stored as ours, ``gate``/``up`` (experts,
hidden, expert_dim) and ``down`` (experts, expert_dim, hidden); so are the router,
the PLE tables and every norm: keras-hub's Gemma 4 RMSNorm multiplies by ``scale``, as ours.
"""

from __future__ import annotations

import numpy as np

from ..models.gemma.config import GLOBAL, LOCAL
from ..models.gemma4.config import Gemma4Config
from .hf_gemma4 import OUR_LAYER_TYPES

BLOCK_GROUP = "gemma4_text_decoder_block"
HF_TYPES = OUR_LAYER_TYPES            # keras-hub's layer_types are transformers' names
QKV = (".query.kernel", ".key.kernel", ".value.kernel")

# Our weight path inside block i  ->  (keras-hub layer, as attributes of its decoder block; the weight's
# attribute on that layer; its index among the layer's own variables, which is how the .h5 names it)
BLOCK = {
    "pre_attention_norm.scale": ("pre_attention_norm", "scale", 0),
    "attention.query.kernel": ("attention.query_dense", "kernel", 0),
    "attention.query_norm.scale": ("attention.query_norm", "scale", 0),
    "attention.attention_output.kernel": ("attention.output_dense", "kernel", 0),
    "post_attention_norm.scale": ("post_attention_norm", "scale", 0),
    "pre_ffw_norm.scale": ("pre_ffw_norm", "scale", 0),
    "mlp.gate.kernel": ("gating_ffw", "kernel", 0),          # the GELU branch
    "mlp.up.kernel": ("gating_ffw_2", "kernel", 0),          # the linear branch
    "mlp.down.kernel": ("ffw_linear", "kernel", 0),
    "post_ffw_norm.scale": ("post_ffw_norm", "scale", 0),
    ".layer_scalar": ("", "layer_scalar", 0),                # a weight of the block itself
}
OWN_KV = {"attention.key.kernel": ("attention.key_dense", "kernel", 0),
          "attention.key_norm.scale": ("attention.key_norm", "scale", 0)}
VALUES = {"attention.value.kernel": ("attention.value_dense", "kernel", 0)}
PER_LAYER = {"per_layer_gate.kernel": ("per_layer_input_gate", "kernel", 0),
             "per_layer_projection.kernel": ("per_layer_up_proj", "kernel", 0),
             "post_per_layer_norm.scale": ("post_per_layer_input_norm", "scale", 0)}
EXPERTS = {"post_ffw_norm_dense.scale": ("post_ffw_norm_dense", "scale", 0),
           "pre_ffw_norm_experts.scale": ("pre_ffw_norm_moe", "scale", 0),
           "post_ffw_norm_experts.scale": ("post_ffw_norm_moe_path", "scale", 0),
           "experts.router.kernel": ("moe_router.proj", "kernel", 0),
           "experts.router_scale": ("moe_router", "per_dim_scale", 0),
           "experts.gate": ("moe_expert_bank", "gate_proj", 0),
           "experts.up": ("moe_expert_bank", "up_proj", 1),
           "experts.down": ("moe_expert_bank", "down_proj", 2),
           "experts.per_expert_scale": ("moe_expert_bank", "per_expert_scale", 3)}
# Top level: (the .h5 group, Keras' snake_case class name; the backbone attribute; the weight's attribute)
TOP = {"token_embedding.embeddings": ("reversible_embedding", "token_embedding", "embeddings"),
       "final_norm.scale": ("rms_normalization", "layer_norm", "scale")}
PLE = {"per_layer_embedding/token_table.embeddings": ("embedding", "per_layer_token_embedding", "embeddings"),
       "per_layer_embedding/context_projection.kernel": ("dense", "per_layer_model_projection", "kernel"),
       "per_layer_embedding/context_norm.scale": ("rms_normalization", "per_layer_projection_norm", "scale")}


def gemma4_config_from_keras_hub(values: dict, where: str, name: str) -> Gemma4Config:
    """A Gemma4Config from a ``Gemma4Backbone`` config.json's ``config``; ValueError naming the field."""
    get = values.get
    missing = [f"config.{f}" for f in ("vocabulary_size", "num_layers", "num_query_heads", "num_key_value_heads",
                                       "hidden_dim", "intermediate_dim", "head_dim") if get(f) is None]
    if missing:
        raise ValueError(f"{where}: field {', '.join(repr(f) for f in missing)} is missing")
    layers, head_dim = int(values["num_layers"]), int(values["head_dim"])
    problems = [f"{field}={get(field)!r} ({why})" for field, bad, why in [
        ("use_bidirectional_attention", get("use_bidirectional_attention"), "an encoder, not a causal decoder"),
        ("is_embedding_model", get("is_embedding_model"), "an embedding model, not a language model"),
        ("use_sliding_window_attention", not get("use_sliding_window_attention", True),
         "local layers without a window are not a Gemma 4 model"),
        ("local_rope_scaling_factor", float(get("local_rope_scaling_factor") or 1.0) != 1.0,
         "only the global layers' RoPE may be scaled"),
        ("global_rope_partial_rotary_factor", float(get("global_rope_partial_rotary_factor") or 1.0)
         * int(get("global_head_dim") or head_dim) < 2, "under one pair: keras-hub would still rotate one"),
        ("enable_moe_block", get("enable_moe_block") and not (get("num_experts") and get("expert_intermediate_dim")),
         "without num_experts and expert_intermediate_dim"),
    ] if bad]
    kinds = get("layer_types")
    if kinds is None:     # keras-hub's own rule: the last of every `sliding_window_pattern` layers is global
        pattern = int(get("sliding_window_pattern") or 6)
        kinds = ["full_attention" if i % pattern == pattern - 1 else "sliding_attention" for i in range(layers)]
    first_shared = layers - int(get("num_kv_shared_layers") or 0)
    if sorted(set(kinds) - set(HF_TYPES)) or len(kinds) != layers:
        problems.append(f"layer_types={kinds!r} (expected {layers} of {sorted(HF_TYPES)})")
    elif kinds[-1] != "full_attention":   # transformers forces the last layer global; keras-hub does not
        problems.append(f"layer_types / sliding_window_pattern make the last layer {kinds[-1]!r} (transformers "
                        "and Gemma4Config make it full_attention)")
    elif set(kinds[first_shared:]) - set(kinds[:max(first_shared, 0)]):
        problems.append(f"num_kv_shared_layers={get('num_kv_shared_layers')} (a shared layer has no earlier layer of "
                        "its type to borrow keys and values from)")
    if problems:
        raise ValueError(f"{where}: cannot load this Gemma4Backbone: " + "; ".join(problems))
    global_kv_heads, moe = get("num_global_key_value_heads"), bool(get("enable_moe_block"))
    types = tuple(HF_TYPES[k] for k in kinds)
    try:
        return Gemma4Config(
            vocab_size=int(values["vocabulary_size"]), hidden_dim=int(values["hidden_dim"]), num_layers=layers,
            num_query_heads=int(values["num_query_heads"]), num_kv_heads=int(values["num_key_value_heads"]),
            head_dim=head_dim, intermediate_dim=int(values["intermediate_dim"]), layer_types=types,
            sliding_window=int(get("sliding_window_size") or 512) if LOCAL in types else None,
            attn_soft_cap=get("attention_logit_soft_cap"), final_soft_cap=get("final_logit_soft_cap"),
            rope_base_local=float(get("local_rope_wavelength") or 10_000.0),
            rope_base_global=float(get("global_rope_wavelength") or 1_000_000.0),
            rope_scaling_factor=float(get("global_rope_scaling_factor") or 1.0),
            rope_fraction_global=float(get("global_rope_partial_rotary_factor") or 1.0),
            global_head_dim=get("global_head_dim"), num_global_kv_heads=global_kv_heads,
            attention_k_eq_v=global_kv_heads is not None,     # keras-hub: K = V exactly when the count is set
            num_kv_shared_layers=int(get("num_kv_shared_layers") or 0),
            use_double_wide_mlp=bool(get("use_double_wide_mlp")),
            per_layer_input_dim=int(get("hidden_size_per_layer_input") or 0),
            per_layer_vocab_size=int(get("vocab_size_per_layer_input") or values["vocabulary_size"])
            if get("hidden_size_per_layer_input") else None,
            num_experts=int(get("num_experts")) if moe else 0,
            num_experts_per_token=int(get("num_experts_per_token") or 8) if moe else 0,
            expert_intermediate_dim=int(get("expert_intermediate_dim")) if moe else 0,
            rms_norm_eps=float(get("layer_norm_epsilon") or 1e-6),
            # not in config.json: 128K for E2B/E4B, 256K for the K = V models (26B A4B, 31B)
            max_sequence_length=262_144 if global_kv_heads is not None else 131_072, name=name)
    except (TypeError, ValueError) as error:      # e.g. KV-shared layers with no earlier layer of their type
        raise ValueError(f"{where}: {error}") from error


def block_weights(config: Gemma4Config, i: int) -> dict:
    """{our path inside block i: (keras-hub layer, weight attribute, variable index)} for this block's weights."""
    block = dict(BLOCK)
    if config.kv_sharing(i) != "reuse":                 # a borrowing layer has no key/value projection
        block.update(OWN_KV)
        if not config.keys_are_values(i):
            block.update(VALUES)
    block.update(PER_LAYER if config.per_layer_input_dim else {})
    block.update(EXPERTS if config.num_experts else {})
    return block


def our_path(i: int, rest: str) -> str:
    return f"block_{i}{rest}" if rest.startswith(".") else f"block_{i}/{rest}"


def h5_layout(config: Gemma4Config) -> dict:
    """{our weight path: the ``.h5`` path keras-hub stores it at}. Keras numbers layers of one class in
    graph order, so with PLE the per-layer norm is ``rms_normalization`` and the final norm ``_1``."""
    top = {**TOP, **(PLE if config.per_layer_input_dim else {})}
    layout = {ours: f"layers/{group}/vars/0" for ours, (group, _, _) in top.items()}
    if config.per_layer_input_dim:
        layout["final_norm.scale"] = "layers/rms_normalization_1/vars/0"
    for i in range(config.num_layers):
        group = BLOCK_GROUP if i == 0 else f"{BLOCK_GROUP}_{i}"
        for rest, (layer, _, index) in block_weights(config, i).items():
            inner = f"{layer.replace('.', '/')}/" if layer else ""
            layout[our_path(i, rest)] = f"layers/{group}/{inner}vars/{index}"
    return layout


def block_index(path: str):
    """3 for ``block_3/...`` or ``block_3.layer_scalar``; None for a top-level weight."""
    head = path.split("/", 1)[0].split(".", 1)[0]
    return int(head[len("block_"):]) if head.startswith("block_") else None


def keras_hub_shape(path: str, config: Gemma4Config, our_shape) -> tuple:
    """The shape keras-hub stores our weight ``path`` in: q/k/v ``(heads, hidden, head_dim)``, the attention
    output ``(heads, head_dim, hidden)`` (with this layer's heads and head size), ``layer_scalar`` ``()``."""
    i = block_index(path)
    if path.endswith(QKV):
        heads = config.num_query_heads if path.endswith("query.kernel") else config.kv_heads_of(i)
        return (heads, config.hidden_dim, config.head_dim_of(i))
    if path.endswith("attention_output.kernel"):
        return (config.num_query_heads, config.head_dim_of(i), config.hidden_dim)
    if path.endswith("layer_scalar"):
        return ()
    return tuple(our_shape)


def to_ours(path: str, value: np.ndarray, our_shape) -> np.ndarray:
    """A keras-hub tensor in our layout."""
    if path.endswith(QKV):
        value = value.transpose(1, 0, 2)          # (heads, hidden, head_dim) -> (hidden, heads, head_dim)
    return value.reshape(our_shape)               # -> (hidden, heads * head_dim); output: (heads * head_dim, hidden)


def to_theirs(path: str, value: np.ndarray, shape) -> np.ndarray:
    """Our tensor in keras-hub's layout ``shape`` (``keras_hub_shape``)."""
    if path.endswith(QKV):                        # (hidden, heads * head_dim) -> (heads, hidden, head_dim)
        value = value.reshape(shape[1], shape[0], shape[2]).transpose(1, 0, 2)
    return value.reshape(shape)                   # output: (heads * head_dim, hidden) -> (heads, head_dim, hidden)
