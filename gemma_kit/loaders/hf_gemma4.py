"""Gemma 4 in a Hugging Face folder: ``config.json`` <-> ``Gemma4Config``, tensor names <-> our weight paths.

transformers calls the text decoder ``gemma4_text`` (``Gemma4ForCausalLM``); a ``gemma4``
folder is the multimodal model (``Gemma4ForConditionalGeneration``), whose ``text_config``
and ``model.language_model.*`` tensors are the same decoder: we load that part and leave
the vision and audio towers. ``hf_gemma.py`` streams the tensors; ``export/huggingface.py``
runs this map backwards.

Layout conventions to undo (``to_ours`` / ``to_theirs``):
- ``nn.Linear`` weights are ``[out, in]``, Keras kernels ``(in, out)``: transpose;
- experts are stored ``gate_up_proj (experts, 2 * expert_dim, hidden)`` and
  ``down_proj (experts, hidden, expert_dim)``; ours ``gate``/``up`` (experts, hidden,
  expert_dim) and ``down`` (experts, expert_dim, hidden): split the halves, swap the last two axes;
- norms need nothing: Gemma 4's RMSNorm multiplies by ``weight`` in both.
"""

from __future__ import annotations

import numpy as np

from ..models.gemma.config import GLOBAL, LOCAL
from ..models.gemma4.config import Gemma4Config
from .hf_files import HuggingFaceFormatError

MODEL_TYPES = ("gemma4_text", "gemma4", "gemma4_assistant")   # an assistant only to refuse it (below)
# transformers 5's Gemma4TextConfig defaults, for fields a config.json leaves out.
DEFAULTS = dict(vocab_size=262_144, hidden_size=2304, intermediate_size=9216, num_hidden_layers=30,
                num_attention_heads=8, num_key_value_heads=4, head_dim=256, global_head_dim=512,
                max_position_embeddings=131_072, rms_norm_eps=1e-6, sliding_window=512,
                final_logit_softcapping=None, vocab_size_per_layer_input=262_144, hidden_size_per_layer_input=256,
                attention_k_eq_v=False, num_kv_shared_layers=0, enable_moe_block=False, use_double_wide_mlp=False,
                num_experts=None, top_k_experts=None, moe_intermediate_size=None, num_global_key_value_heads=None)
DEFAULT_ROPE = {"sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                   "rope_theta": 1_000_000.0}}
HF_LAYER_TYPES = {LOCAL: "sliding_attention", GLOBAL: "full_attention"}
OUR_LAYER_TYPES = {theirs: ours for ours, theirs in HF_LAYER_TYPES.items()}   # keras-hub uses these names too


def gemma4_config_from_hf(config_dict: dict, path: str, name: str | None = None) -> Gemma4Config:
    """A Gemma4Config from a ``gemma4_text`` config.json, or a ``gemma4`` one's ``text_config``."""
    if config_dict.get("model_type") == "gemma4_assistant":
        raise HuggingFaceFormatError(f"{path}: a gemma4_assistant checkpoint is a speculative-decoding drafter, "
                                     "not a model that writes text alone: load it with gemma_kit.load_assistant"
                                     "(path) and pass speculative=gemma_kit.Assistant(assistant) to the target's "
                                     "generate (loaders/hf_gemma4_assistant.py)")
    if config_dict.get("model_type") == "gemma4":
        config_dict, path = dict(config_dict.get("text_config") or {}), f"{path} (text_config)"
    values = {**DEFAULTS, **config_dict}
    get = values.get
    rope = {**DEFAULT_ROPE, **(get("rope_parameters") or {})}
    sliding, full = rope.get("sliding_attention") or {}, rope.get("full_attention") or {}
    activation = get("hidden_activation") or "gelu_pytorch_tanh"
    for bad, what in [
        (activation != "gelu_pytorch_tanh", f"hidden_activation {activation!r} (Gemma 4 uses 'gelu_pytorch_tanh')"),
        (bool(get("attention_bias")), "attention_bias=true (Gemma 4 has no biases)"),
        (get("use_bidirectional_attention") is not None, "use_bidirectional_attention "
         f"{get('use_bidirectional_attention')!r} (an encoder or a vision mask, not a text decoder)"),
        (get("tie_word_embeddings") is False, "tie_word_embeddings=false (Gemma 4 ties its output layer)"),
        (sliding.get("rope_type", "default") != "default", f"sliding layers' rope_type {sliding.get('rope_type')!r}"),
        (full.get("rope_type", "default") not in ("default", "proportional"),
         f"full-attention layers' rope_type {full.get('rope_type')!r}"),
        (any(float(r.get("factor", 1.0)) != 1.0 for r in (sliding, full)), "RoPE scaling 'factor' != 1"),
        (bool(get("enable_moe_block")) and not (get("num_experts") and get("top_k_experts")
                                                 and get("moe_intermediate_size")),
         "enable_moe_block=true without num_experts, top_k_experts and moe_intermediate_size"),
    ]:
        if bad:
            raise HuggingFaceFormatError(f"{path}: {what} is not supported")
    try:
        layers = int(get("num_hidden_layers"))
        hf_types = get("layer_types") or ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                                          for i in range(layers)]
        unknown = sorted(set(hf_types) - set(HF_LAYER_TYPES.values()))
        if unknown:
            raise HuggingFaceFormatError(f"{path}: layer_types {unknown} are not supported "
                                         f"(expected {sorted(HF_LAYER_TYPES.values())})")
        types = tuple(OUR_LAYER_TYPES[t] for t in hf_types)
        types = types[:-1] + (GLOBAL,)                           # transformers forces the last layer global
        moe = bool(get("enable_moe_block"))
        k_eq_v = bool(get("attention_k_eq_v"))
        global_head_dim, global_kv_heads = _global_layer_shape(values, types, k_eq_v, path)
        return Gemma4Config(
            vocab_size=int(get("vocab_size")), hidden_dim=int(get("hidden_size")), num_layers=layers,
            num_query_heads=int(get("num_attention_heads")), num_kv_heads=int(get("num_key_value_heads")),
            head_dim=int(get("head_dim")), intermediate_dim=int(get("intermediate_size")), layer_types=types,
            sliding_window=int(get("sliding_window")) if LOCAL in types else None,
            final_soft_cap=None if get("final_logit_softcapping") is None else float(get("final_logit_softcapping")),
            rope_base_local=float(sliding.get("rope_theta", 10_000.0)),
            rope_base_global=float(full.get("rope_theta", 1_000_000.0)),
            rope_fraction_global=float(full.get("partial_rotary_factor", 1.0)),
            global_head_dim=global_head_dim, num_global_kv_heads=global_kv_heads,
            attention_k_eq_v=k_eq_v, num_kv_shared_layers=int(get("num_kv_shared_layers") or 0),
            use_double_wide_mlp=bool(get("use_double_wide_mlp")),
            per_layer_input_dim=int(get("hidden_size_per_layer_input") or 0),
            per_layer_vocab_size=int(get("vocab_size_per_layer_input") or get("vocab_size")),
            num_experts=int(get("num_experts")) if moe else 0,
            num_experts_per_token=int(get("top_k_experts")) if moe else 0,
            expert_intermediate_dim=int(get("moe_intermediate_size")) if moe else 0,
            rms_norm_eps=float(get("rms_norm_eps")), max_sequence_length=int(get("max_position_embeddings")),
            name=name or "gemma4_text")
    except HuggingFaceFormatError:
        raise
    except (TypeError, ValueError) as error:
        raise HuggingFaceFormatError(f"{path}: {error}") from error


def _global_layer_shape(values: dict, types, k_eq_v: bool, path: str):
    """(global_head_dim, num_global_kv_heads or None), from either dialect of config.json.

    The Hub's files say ``global_head_dim`` and ``num_global_key_value_heads`` (the latter used only
    when ``attention_k_eq_v``, as transformers does); transformers 5.2x writes ``per_layer_config``,
    ``{layer index: {"head_dim": ..., "num_key_value_heads": ...}}``, for the global layers.
    """
    overrides = values.get("per_layer_config")
    if not overrides:
        heads = values.get("num_global_key_value_heads") if k_eq_v else None
        return int(values.get("global_head_dim") or values["head_dim"]), int(heads) if heads else None
    shapes = set()
    for index, layer in overrides.items():
        i = int(index)
        extra = sorted(set(layer) - {"head_dim", "num_key_value_heads"})
        if i >= len(types) or types[i] != GLOBAL or extra:
            raise HuggingFaceFormatError(f"{path}: per_layer_config[{index}] = {layer} is not supported (only "
                                         "head_dim and num_key_value_heads on full-attention layers)")
        shapes.add((int(layer.get("head_dim", values["head_dim"])), layer.get("num_key_value_heads")))
    if len(shapes) > 1 or len(overrides) != types.count(GLOBAL):
        raise HuggingFaceFormatError(f"{path}: per_layer_config gives full-attention layers different shapes "
                                     f"({sorted(shapes, key=str)}); Gemma4Config has one shape for all of them")
    (head_dim, heads), = shapes
    return head_dim, int(heads) if heads else None


def hf_config_dict(config: Gemma4Config) -> dict:
    """The ``gemma4_text`` config.json fields for ``config`` (the caller adds ids and dtype)."""
    rope_full = {"rope_type": "proportional" if config.rope_fraction_global < 1 else "default",
                 "rope_theta": config.rope_base_global}
    if config.rope_fraction_global < 1:
        rope_full["partial_rotary_factor"] = config.rope_fraction_global
    out = {
        "architectures": ["Gemma4ForCausalLM"], "model_type": "gemma4_text",
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_dim,
        "intermediate_size": config.intermediate_dim, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_query_heads, "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim, "global_head_dim": config.global_head_dim or config.head_dim,
        "num_global_key_value_heads": config.num_global_kv_heads, "attention_k_eq_v": config.attention_k_eq_v,
        "layer_types": [HF_LAYER_TYPES[t] for t in config.layer_types],
        "sliding_window": config.sliding_window or DEFAULTS["sliding_window"],
        "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": config.rope_base_local},
                            "full_attention": rope_full},
        "final_logit_softcapping": config.final_soft_cap, "num_kv_shared_layers": config.num_kv_shared_layers,
        "use_double_wide_mlp": config.use_double_wide_mlp,
        "hidden_size_per_layer_input": config.per_layer_input_dim,
        "vocab_size_per_layer_input": config.per_layer_vocab_size or config.vocab_size,
        "enable_moe_block": bool(config.num_experts),
        "num_experts": config.num_experts or None, "top_k_experts": config.num_experts_per_token or None,
        "moe_intermediate_size": config.expert_intermediate_dim or None,
        "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": config.max_sequence_length,
        "rms_norm_eps": config.rms_norm_eps, "attention_bias": False, "attention_dropout": 0.0,
        "tie_word_embeddings": True, "initializer_range": 0.02, "use_cache": True,
    }
    if config.num_global_kv_heads and not config.attention_k_eq_v:
        raise ValueError(f"Config {config.name!r} cannot be saved for transformers: it reads "
                         "num_global_key_value_heads only when attention_k_eq_v is true")
    if config.query_pre_attn_scalar != 1.0 or config.attn_soft_cap or not config.use_qk_norm or \
            not config.use_post_norms or config.rope_scaling_factor != 1.0:
        raise ValueError(f"Config {config.name!r} cannot be saved for transformers: Gemma 4 has attention "
                         "scale 1, QK-norm, post-norms, no attention soft-cap and no RoPE scaling")
    return out


BLOCK = {
    "pre_attention_norm.scale": "input_layernorm.weight",
    "post_attention_norm.scale": "post_attention_layernorm.weight",
    "pre_ffw_norm.scale": "pre_feedforward_layernorm.weight",
    "post_ffw_norm.scale": "post_feedforward_layernorm.weight",
    "attention.query.kernel": "self_attn.q_proj.weight",
    "attention.query_norm.scale": "self_attn.q_norm.weight",
    "attention.attention_output.kernel": "self_attn.o_proj.weight",
    "mlp.gate.kernel": "mlp.gate_proj.weight",
    "mlp.up.kernel": "mlp.up_proj.weight",
    "mlp.down.kernel": "mlp.down_proj.weight",
    ".layer_scalar": "layer_scalar",            # a weight of the block itself: "block_3.layer_scalar"
}
OWN_KV = {"attention.key.kernel": "self_attn.k_proj.weight", "attention.key_norm.scale": "self_attn.k_norm.weight"}
VALUES = {"attention.value.kernel": "self_attn.v_proj.weight"}
PER_LAYER = {"per_layer_gate.kernel": "per_layer_input_gate.weight",
             "per_layer_projection.kernel": "per_layer_projection.weight",
             "post_per_layer_norm.scale": "post_per_layer_input_norm.weight"}
EXPERTS = {"post_ffw_norm_dense.scale": "post_feedforward_layernorm_1.weight",
           "pre_ffw_norm_experts.scale": "pre_feedforward_layernorm_2.weight",
           "post_ffw_norm_experts.scale": "post_feedforward_layernorm_2.weight",
           "experts.router.kernel": "router.proj.weight", "experts.router_scale": "router.scale",
           "experts.per_expert_scale": "router.per_expert_scale",
           "experts.gate": ("experts.gate_up_proj", 0), "experts.up": ("experts.gate_up_proj", 1),
           "experts.down": "experts.down_proj"}
PLE = {"per_layer_embedding/token_table.embeddings": "embed_tokens_per_layer.weight",
       "per_layer_embedding/context_projection.kernel": "per_layer_model_projection.weight",
       "per_layer_embedding/context_norm.scale": "per_layer_projection_norm.weight"}


def hf_tensor_names(config: Gemma4Config) -> dict:
    """{our weight path: transformers name, or (name, half) for one half of a fused gate_up tensor}."""
    names = {"token_embedding.embeddings": "embed_tokens.weight", "final_norm.scale": "norm.weight",
             **(PLE if config.per_layer_input_dim else {})}
    for i in range(config.num_layers):
        block = dict(BLOCK)
        if config.kv_sharing(i) != "reuse":
            block.update(OWN_KV)
            if not config.keys_are_values(i):
                block.update(VALUES)
        block.update(PER_LAYER if config.per_layer_input_dim else {})
        block.update(EXPERTS if config.num_experts else {})
        for ours, theirs in block.items():
            theirs = (f"layers.{i}.{theirs[0]}", theirs[1]) if isinstance(theirs, tuple) else f"layers.{i}.{theirs}"
            names[f"block_{i}{ours}" if ours.startswith(".") else f"block_{i}/{ours}"] = theirs
    return names


def to_ours(value: np.ndarray, ours: str, half=None) -> np.ndarray:
    """A transformers tensor in our layout (``half``: which half of a fused ``gate_up_proj``)."""
    if half is not None:
        value = np.split(value, 2, axis=1)[half]           # (experts, 2 * f, hidden) -> (experts, f, hidden)
    if value.ndim == 3:
        return value.transpose(0, 2, 1)                     # experts' [out, in] -> (in, out)
    return value.T if ours.endswith("kernel") else value


def theirs_shape(shape: tuple, ours: str, half=None) -> tuple:
    """The transformers shape of the tensor that fills our variable of ``shape``."""
    if half is not None:                                    # (experts, hidden, f) <- (experts, 2 * f, hidden)
        return (shape[0], 2 * shape[2], shape[1])
    if len(shape) == 3:
        return (shape[0], shape[2], shape[1])
    return shape[::-1] if ours.endswith("kernel") else shape


def to_theirs(values: dict) -> dict:
    """{transformers name: tensor} from {our path: (name or (name, half), our tensor)}, halves fused back."""
    out, halves = {}, {}
    for ours, (theirs, value) in values.items():
        if isinstance(theirs, tuple):
            halves.setdefault(theirs[0], {})[theirs[1]] = value.transpose(0, 2, 1)
        elif value.ndim == 3:
            out[theirs] = value.transpose(0, 2, 1)
        else:
            out[theirs] = value.T if ours.endswith("kernel") else value
    for name, parts in halves.items():
        out[name] = np.concatenate([parts[0], parts[1]], axis=1)   # (experts, 2 * f, hidden)
    return out
