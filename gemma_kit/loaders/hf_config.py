"""transformers' ``config.json`` -> GemmaConfig for Gemma 1, 2 and 3 (and the text part of multimodal Gemma 3),
Gemma4Config for ``gemma4_text`` / ``gemma4`` (``hf_gemma4.py``), or GriffinConfig for RecurrentGemma
(``model_type`` ``recurrent_gemma``, at the end of this file).

Every field we need has a name in transformers' config classes:

| GemmaConfig            | config.json                                                         |
|------------------------|---------------------------------------------------------------------|
| hidden_dim             | hidden_size                                                         |
| intermediate_dim       | intermediate_size (one GeGLU branch, as ours)                       |
| num_query_heads / kv   | num_attention_heads / num_key_value_heads                           |
| layer_types            | layer_types ("sliding_attention"/"full_attention"), or: all global  |
|                        | (gemma), alternating from local (gemma2), sliding_window_pattern    |
|                        | (gemma3, layer i global when (i + 1) % pattern == 0)                |
| query_pre_attn_scalar  | query_pre_attn_scalar (Gemma 1: head_dim)                           |
| attn / final_soft_cap  | attn_logit_softcapping / final_logit_softcapping                    |
| rope_base_global/local | rope_theta / rope_local_base_freq, or rope_parameters[layer type]   |
| rope_scaling_factor    | rope_scaling / rope_parameters["full_attention"]: {"rope_type":     |
|                        | "linear", "factor": f}                                              |
| max_sequence_length    | max_position_embeddings                                             |

config.json comes in two dialects: transformers 4 writes ``rope_theta``, ``rope_scaling`` and (Gemma 3)
``rope_local_base_freq`` and ``sliding_window_pattern``; transformers 5 writes ``rope_parameters``
(one dict per layer type for Gemma 3) and ``layer_types``. We read both. A field the file leaves
out takes transformers' default (``DEFAULTS``): the multimodal Gemma 3 4B, for one, lists only
six fields of its text model.
"""

from __future__ import annotations

import os

from ..models.gemma.config import GLOBAL, LOCAL, GemmaConfig, gemma2_layer_types, gemma3_layer_types
from ..models.griffin.config import GriffinConfig
from .deepmind import OPTIONS, check_options
from .hf_files import CONFIG_FILE, HuggingFaceFormatError, model_name, read_config_json
from .hf_gemma4 import MODEL_TYPES as GEMMA4_MODEL_TYPES
from .hf_gemma4 import gemma4_config_from_hf
from .registry import folder_of

GRIFFIN_MODEL_TYPE = "recurrent_gemma"
MODEL_TYPES = ("gemma", "gemma2", "gemma3_text", "gemma3", *GEMMA4_MODEL_TYPES, GRIFFIN_MODEL_TYPE)


def read_hf_config(path, **options):
    """The config of a transformers folder (or of its config.json, or one of its weight files)."""
    folder = folder_of(path)
    return config_from_hf(read_config_json(folder), os.path.join(folder, CONFIG_FILE), model_name(folder),
                          **options)


def config_from_hf(config_dict: dict, path: str = CONFIG_FILE, name: str | None = None, **options):
    """The config a transformers ``config.json`` (its contents, read from ``path``) describes: a
    GriffinConfig for ``recurrent_gemma``, a GemmaConfig otherwise. ``options``: RecurrentGemma's
    overrides (``deepmind.OPTIONS``)."""
    if config_dict.get("model_type") == GRIFFIN_MODEL_TYPE:
        return griffin_config_from_hf(config_dict, path, name, **options)
    if options:
        raise TypeError(f"{path}: a {config_dict.get('model_type')} checkpoint takes no loading options, "
                        f"got {sorted(options)} (they are for RecurrentGemma: {sorted(OPTIONS)})")
    if config_dict.get("model_type") in GEMMA4_MODEL_TYPES:
        return gemma4_config_from_hf(config_dict, path, name)
    return gemma_config_from_hf(config_dict, path, name)


# -- Gemma --------------------------------------------------------------------------------------------
# What transformers 5 assumes for fields a config.json leaves out (GemmaConfig, Gemma2Config,
# Gemma3TextConfig; tests/test_huggingface.py checks this table against those classes).
DEFAULTS = {
    "gemma": dict(vocab_size=256_000, hidden_size=3072, intermediate_size=24_576, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=16, head_dim=256, max_position_embeddings=8192,
                  rms_norm_eps=1e-6, rope_theta=10_000.0),
    "gemma2": dict(vocab_size=256_000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=8192,
                   rms_norm_eps=1e-6, rope_theta=10_000.0, query_pre_attn_scalar=256, sliding_window=4096,
                   attn_logit_softcapping=50.0, final_logit_softcapping=30.0),
    "gemma3_text": dict(vocab_size=262_208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=131_072,
                        rms_norm_eps=1e-6, rope_theta=1_000_000.0, rope_local_base_freq=10_000.0,
                        query_pre_attn_scalar=256, sliding_window=4096, attn_logit_softcapping=None,
                        final_logit_softcapping=None, sliding_window_pattern=6),
}
HF_LAYER_TYPES = {"sliding_attention": LOCAL, "full_attention": GLOBAL}


def _rope(spec, where):
    """(base, linear factor) from a rope dict: ``{"rope_type": "default"|"linear", "rope_theta", "factor"}``."""
    kind = spec.get("rope_type", spec.get("type", "default"))
    if kind not in ("default", "linear"):
        raise HuggingFaceFormatError(f"{where}: rope type {kind!r} is not supported (only 'default' and 'linear')")
    return spec.get("rope_theta"), float(spec.get("factor", 1.0)) if kind == "linear" else 1.0


def _rope_bases(values, model_type, where):
    """(global base, local base, global linear factor) from either config.json dialect."""
    params, legacy = values.get("rope_parameters"), values.get("rope_scaling") or {}
    if model_type != "gemma3_text":                        # one rotary embedding for every layer
        base, factor = _rope(params if params else legacy, where + ": rope_parameters/rope_scaling")
        base = float(base or values.get("rope_theta") or DEFAULTS[model_type]["rope_theta"])
        return base, base, factor
    if params and "full_attention" in params:              # transformers 5: one dict per layer type
        full, sliding = params["full_attention"], params.get("sliding_attention", {})
    else:                                                  # transformers 4
        full = dict(legacy, rope_theta=values.get("rope_theta"))
        sliding = {"rope_theta": values.get("rope_local_base_freq")}
    base_global, factor = _rope(full, where + ": rope for full_attention layers")
    base_local, local_factor = _rope(sliding, where + ": rope for sliding_attention layers")
    if local_factor != 1.0:
        raise HuggingFaceFormatError(f"{where}: rope scaling on sliding-window layers is not supported")
    defaults = DEFAULTS["gemma3_text"]
    return (float(base_global or defaults["rope_theta"]), float(base_local or defaults["rope_local_base_freq"]),
            factor)


def _layer_types(values, model_type, num_layers, where):
    if model_type == "gemma":
        return (GLOBAL,) * num_layers
    if values.get("layer_types"):
        unknown = sorted(set(values["layer_types"]) - set(HF_LAYER_TYPES))
        if unknown:
            raise HuggingFaceFormatError(f"{where}: layer_types {unknown} are not supported "
                                         f"(known: {', '.join(HF_LAYER_TYPES)})")
        return tuple(HF_LAYER_TYPES[t] for t in values["layer_types"])
    if model_type == "gemma2":
        return gemma2_layer_types(num_layers)
    pattern = values.get("sliding_window_pattern") or values.get("_sliding_window_pattern") or 6
    return gemma3_layer_types(num_layers, int(pattern))


def gemma_config_from_hf(config_dict: dict, path: str = CONFIG_FILE, name: str | None = None) -> GemmaConfig:
    """A GemmaConfig from the contents of a transformers ``config.json`` (read from ``path``)."""
    model_type = config_dict.get("model_type")
    if model_type == "gemma3":                         # multimodal: the language model is the text part
        config_dict, model_type = dict(config_dict.get("text_config") or {}), "gemma3_text"
        path = f"{path} (text_config)"
    if model_type not in DEFAULTS:
        raise HuggingFaceFormatError(f"{path}: model_type {model_type!r} is not a Gemma model "
                                     f"(supported: {', '.join(MODEL_TYPES)})")
    values = {**DEFAULTS[model_type], **config_dict}     # an explicit null stays None
    get = values.get
    activation = get("hidden_activation") or get("hidden_act") or "gelu_pytorch_tanh"
    allowed = ("gelu_pytorch_tanh", "gelu") if model_type == "gemma" else ("gelu_pytorch_tanh",)  # gemma: legacy
    problems = [
        (activation not in allowed, f"hidden activation {activation!r} (Gemma uses 'gelu_pytorch_tanh')"),
        (bool(get("attention_bias")), "attention_bias=true (Gemma has no biases)"),
        (bool(get("use_bidirectional_attention")), "use_bidirectional_attention=true (an encoder)"),
        (get("tie_word_embeddings") is False, "tie_word_embeddings=false (Gemma ties its output layer)"),
    ]
    for bad, what in problems:
        if bad:
            raise HuggingFaceFormatError(f"{path}: {what} is not supported")
    gemma1 = model_type == "gemma"
    optional = lambda key: None if gemma1 or get(key) is None else float(get(key))  # noqa: E731
    try:
        layers = int(get("num_hidden_layers"))
        base_global, base_local, factor = _rope_bases(values, model_type, path)
        types = _layer_types(values, model_type, layers, path)
        if model_type == "gemma2" and factor != 1.0 and LOCAL in types:   # we scale global layers only
            raise HuggingFaceFormatError(f"{path}: linear rope scaling on sliding-window layers is not supported")
        return GemmaConfig(
            vocab_size=int(get("vocab_size")), hidden_dim=int(get("hidden_size")), num_layers=layers,
            num_query_heads=int(get("num_attention_heads")), num_kv_heads=int(get("num_key_value_heads")),
            head_dim=int(get("head_dim")), intermediate_dim=int(get("intermediate_size")), layer_types=types,
            sliding_window=get("sliding_window") if LOCAL in types else None,
            query_pre_attn_scalar=optional("query_pre_attn_scalar"),   # None: head_dim (Gemma 1)
            attn_soft_cap=optional("attn_logit_softcapping"), final_soft_cap=optional("final_logit_softcapping"),
            use_post_norms=not gemma1, use_qk_norm=model_type == "gemma3_text",
            rope_base_global=base_global, rope_base_local=base_local, rope_scaling_factor=factor,
            rms_norm_eps=float(get("rms_norm_eps")), max_sequence_length=int(get("max_position_embeddings")),
            name=name or model_type)
    except HuggingFaceFormatError:
        raise
    except (TypeError, ValueError) as error:                 # a null or a wrong type; GemmaConfig's checks
        raise HuggingFaceFormatError(f"{path}: {error}") from error


# -- RecurrentGemma -----------------------------------------------------------------------------------
# transformers' RecurrentGemmaConfig defaults, for fields a config.json leaves out.
GRIFFIN_DEFAULTS = dict(num_hidden_layers=26, vocab_size=256_000, hidden_size=2560, intermediate_size=3 * 2560,
                        num_attention_heads=10, lru_width=None, attention_window_size=2048, conv1d_width=4,
                        logits_soft_cap=30.0, block_types=("recurrent", "recurrent", "attention"),
                        hidden_activation="gelu_pytorch_tanh", partial_rotary_factor=0.5, rope_theta=10_000.0)


def griffin_config_from_hf(config_dict: dict, where: str = CONFIG_FILE, name: str | None = None,
                           **options) -> GriffinConfig:
    """config.json -> GriffinConfig; ``options`` (official names) override, as for DeepMind's files."""
    check_options(options, where)
    values = {**GRIFFIN_DEFAULTS, **config_dict}
    rope = values.get("rope_parameters") or {}
    checks = {"num_key_value_heads": (values.get("num_key_value_heads", 1), 1),   # Griffin attention is MQA
              "conv1d_width": (values["conv1d_width"], 4),
              "hidden_activation": (values["hidden_activation"], "gelu_pytorch_tanh"),
              "partial_rotary_factor": (rope.get("partial_rotary_factor", values["partial_rotary_factor"]), 0.5),
              "rope_theta": (rope.get("rope_theta", values["rope_theta"]), 10_000.0)}
    for field, (found, supported) in checks.items():
        if found != supported:
            raise HuggingFaceFormatError(f"{where}: {field} is {found!r}; RecurrentGemma (and gemma_kit's "
                                         f"Griffin) uses {supported!r}")
    if values["intermediate_size"] % 2:
        raise HuggingFaceFormatError(f"{where}: intermediate_size {values['intermediate_size']} is odd; "
                                     "transformers' RecurrentGemma uses half of it per GeGLU branch")
    num_layers, pattern = values["num_hidden_layers"], tuple(values["block_types"])
    return GriffinConfig(
        vocab_size=values["vocab_size"], width=values["hidden_size"],
        mlp_expanded_width=values["intermediate_size"] // 2,      # transformers counts both GeGLU branches
        num_heads=values["num_attention_heads"], lru_width=values["lru_width"],
        block_types=tuple(pattern[i % len(pattern)] for i in range(num_layers)),   # the pattern, cycled
        **{"attention_window_size": values["attention_window_size"], "logits_soft_cap": values["logits_soft_cap"],
           "embeddings_scale_by_sqrt_dim": True, **options},
        name=name or GRIFFIN_MODEL_TYPE)
