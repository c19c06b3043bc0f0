"""Save a model as a Hugging Face folder that transformers loads with ``from_pretrained``.

    model.save_hf("my-gemma")          # or gemma_kit.export.huggingface.save_hf(model, "my-gemma")
    # my-gemma/config.json              model_type gemma | gemma2 | gemma3_text and its fields
    # my-gemma/model.safetensors        transformers' tensor names, Linear weights [out, in]
    # my-gemma/tokenizer.model          the SentencePiece model (tokenizer.json for a JsonTokenizer)
    # my-gemma/tokenizer_config.json    so that AutoTokenizer knows it is a GemmaTokenizer
    # my-gemma/generation_config.json   BOS / EOS / PAD ids (EOS: <eos> and <end_of_turn>)

The mapping is the loader's (``gemma_kit/loaders/hf_gemma.py``) run backwards. Which
``model_type`` to write follows from the config: QK-norm means Gemma 3, post-norms without
QK-norm Gemma 2, neither Gemma 1. A config transformers cannot express (say, Gemma 1 with
sliding-window layers) is refused with the reason, rather than saved wrongly.
The config is written in the transformers 4 dialect (``rope_theta``, ``rope_local_base_freq``,
``rope_scaling``), which transformers 5 still reads, plus ``layer_types``.
"""

from __future__ import annotations

import json
import os

import numpy as np
from keras import ops

from ..loaders import hf_gemma4
from ..loaders.hf_gemma import tensor_names
from ..models.gemma.config import LOCAL, gemma3_layer_types
from ..models.gemma4.config import Gemma4Config
from ..tokenizer import GemmaTokenizer

ARCHITECTURES = {"gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}
# Gemma 4 writes ``gemma4_text`` / Gemma4ForCausalLM (``loaders/hf_gemma4.py``).
SAVED_DTYPES = ("float32", "bfloat16", "float16")


def _number(x):
    """An int when the value is integral (transformers' strict configs type some of these ``int``)."""
    return int(x) if float(x).is_integer() else float(x)


def _model_type(config) -> str:
    problems = []
    if config.use_qk_norm:
        model_type = "gemma3_text"
        if not config.use_post_norms:
            problems.append("QK-norm without post-norms")
    elif config.use_post_norms:
        model_type = "gemma2"
        if config.rope_base_local != config.rope_base_global:
            problems.append("different RoPE bases for local and global layers without QK-norm")
        if config.rope_scaling_factor != 1.0 and LOCAL in config.layer_types:
            problems.append("RoPE scaling on global layers only, without QK-norm")
    else:
        model_type = "gemma"
        if LOCAL in config.layer_types:
            problems.append("sliding-window layers without post-norms")
        if config.attn_soft_cap or config.final_soft_cap:
            problems.append("soft-capping without post-norms")
        if config.query_pre_attn_scalar != config.head_dim:
            problems.append("query_pre_attn_scalar != head_dim without post-norms")
    if problems:
        raise ValueError(f"Config {config.name!r} cannot be saved for transformers: {'; '.join(problems)} "
                         "matches no Gemma generation (gemma, gemma2, gemma3_text)")
    return model_type


def _special_ids(tokenizer) -> dict:
    if not tokenizer:
        return {"bos": 2, "eos": 1, "pad": 0}
    return {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "pad": tokenizer.pad_id}


def hf_config_dict(config, tokenizer=None, dtype: str = "float32") -> dict:
    """The ``config.json`` contents for ``config`` (a GemmaConfig or Gemma4Config)."""
    ids = _special_ids(tokenizer)
    if isinstance(config, Gemma4Config):
        return {**hf_gemma4.hf_config_dict(config), "bos_token_id": ids["bos"], "eos_token_id": ids["eos"],
                "pad_token_id": ids["pad"], "dtype": dtype}
    model_type = _model_type(config)
    out = {
        "architectures": [ARCHITECTURES[model_type]], "model_type": model_type,
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_dim,
        "intermediate_size": config.intermediate_dim, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_query_heads, "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim, "max_position_embeddings": config.max_sequence_length,
        "rms_norm_eps": float(str(np.float32(config.rms_norm_eps))), "attention_bias": False, "attention_dropout": 0.0,
        "tie_word_embeddings": True, "bos_token_id": ids["bos"], "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"], "initializer_range": 0.02, "use_cache": True, "dtype": dtype,
        "rope_theta": config.rope_base_global,
        "rope_scaling": None if config.rope_scaling_factor == 1.0 else
        {"rope_type": "linear", "factor": config.rope_scaling_factor},
    }
    if model_type == "gemma":
        out["hidden_act"] = "gelu_pytorch_tanh"
        return out
    out.update({
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": _number(config.query_pre_attn_scalar),
        "sliding_window": config.sliding_window,
        "layer_types": ["sliding_attention" if t == LOCAL else "full_attention" for t in config.layer_types],
        "attn_logit_softcapping": config.attn_soft_cap, "final_logit_softcapping": config.final_soft_cap,
    })
    if model_type == "gemma3_text":
        out["rope_local_base_freq"] = config.rope_base_local
        # transformers < 4.53 ignores layer_types and rebuilds them from this pattern.
        pattern = config.layer_types.index("global") + 1 if "global" in config.layer_types else 0
        if pattern and tuple(config.layer_types) == gemma3_layer_types(config.num_layers, pattern):
            out["sliding_window_pattern"] = pattern
    return out


def generation_config_dict(tokenizer=None) -> dict:
    """Greedy by default; generation ends at ``<eos>`` and, when the vocabulary has it, ``<end_of_turn>``."""
    ids = _special_ids(tokenizer)
    eos = [ids["eos"]]
    if tokenizer:
        try:
            eos.append(tokenizer.token_to_id("<end_of_turn>"))
        except (KeyError, ValueError):
            pass
    return {"bos_token_id": ids["bos"], "eos_token_id": eos if len(eos) > 1 else eos[0],
            "pad_token_id": ids["pad"]}


def _tensors(backbone, dtype: str) -> dict:
    """{transformers name: NumPy array}; kernels transposed back to ``[out, in]``, expert halves fused."""
    variables = backbone.weights_by_path()
    ours = {path: (theirs, np.asarray(ops.convert_to_numpy(variables[path])))
            for path, theirs in tensor_names(backbone.config).items()}
    return {"model." + name: np.ascontiguousarray(value.astype(dtype, copy=False))
            for name, value in hf_gemma4.to_theirs(ours).items()}


def save_hf(model, folder) -> str:
    """Write ``model`` (a GemmaModel) as a transformers checkpoint folder; returns the folder."""
    import ml_dtypes  # noqa: F401  (NumPy learns "bfloat16")
    from safetensors.numpy import save_file

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    dtype = model.backbone.variable_dtype if model.backbone.variable_dtype in SAVED_DTYPES else "float32"
    tokenizer = model.tokenizer
    config = hf_config_dict(model.config, tokenizer, dtype)    # refuses before writing anything
    save_file(_tensors(model.backbone, dtype), os.path.join(folder, "model.safetensors"),
              metadata={"format": "pt"})                      # transformers wants the "format" entry
    _write_json(os.path.join(folder, "config.json"), config)
    _write_json(os.path.join(folder, "generation_config.json"), generation_config_dict(tokenizer))
    if tokenizer:
        if isinstance(tokenizer, GemmaTokenizer):
            tokenizer.save(os.path.join(folder, "tokenizer.model"))
        else:
            tokenizer.save(os.path.join(folder, "tokenizer.json"))
        _write_json(os.path.join(folder, "tokenizer_config.json"), {
            "tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": False,
            **{f"{role}_token": tokenizer.id_to_token(getattr(tokenizer, f"{role}_id"))
               for role in ("bos", "eos", "pad", "unk")}})
    return folder


def _write_json(path, values) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2)
        f.write("\n")
