"""Gemma's weights in a Hugging Face folder: transformers' tensor names <-> our weight paths.

Used by the Hugging Face format (``huggingface.py``) to load ``model_type`` ``gemma``, ``gemma2``,
``gemma3_text`` and ``gemma3`` (the multimodal model: we load the language model its
``text_config`` describes), and run backwards by ``export/huggingface.py`` to save.

Conventions to undo while loading:
- ``nn.Linear`` weights are ``[out, in]``; a Keras ``Dense`` kernel is ``(in, out)``: transpose.
- Norm weights need nothing: transformers' Gemma RMSNorm also multiplies by ``1 + weight``.
- Names: Gemma 1 has two norms a block and calls the one before the MLP ``post_attention_layernorm``;
  Gemma 2 and 3 use that name for the norm *after* attention and call the pre-MLP one
  ``pre_feedforward_layernorm``. So one tensor name means different things in different generations.
"""

from __future__ import annotations

import os

import numpy as np
from tqdm.auto import tqdm

from ..models.gemma.config import GemmaConfig
from ..models.gemma4.config import Gemma4Config
from . import hf_gemma4
from .hf_files import INDEX_FILE, HuggingFaceFormatError, safe_open, tensor_files

BLOCK_NAMES = {                                   # our weight path (block i) -> transformers name
    "pre_attention_norm.scale": "input_layernorm.weight",
    "attention.query.kernel": "self_attn.q_proj.weight",
    "attention.key.kernel": "self_attn.k_proj.weight",
    "attention.value.kernel": "self_attn.v_proj.weight",
    "attention.attention_output.kernel": "self_attn.o_proj.weight",
    "mlp.gate.kernel": "mlp.gate_proj.weight",
    "mlp.up.kernel": "mlp.up_proj.weight",
    "mlp.down.kernel": "mlp.down_proj.weight",
}
GEMMA1_NORMS = {"pre_ffw_norm.scale": "post_attention_layernorm.weight"}
POST_NORMS = {"post_attention_norm.scale": "post_attention_layernorm.weight",
              "pre_ffw_norm.scale": "pre_feedforward_layernorm.weight",
              "post_ffw_norm.scale": "post_feedforward_layernorm.weight"}
QK_NORMS = {"attention.query_norm.scale": "self_attn.q_norm.weight",
            "attention.key_norm.scale": "self_attn.k_norm.weight"}
# Where the language model sits: causal LM (and transformers 5 multimodal on save), the multimodal
# model in memory, a bare GemmaModel.
PREFIXES = ("model.", "language_model.model.", "model.language_model.", "")


def hf_tensor_names(config: GemmaConfig) -> dict:
    """{our weight path: transformers tensor name without its prefix} for every weight of ``config``."""
    block = {**BLOCK_NAMES, **(POST_NORMS if config.use_post_norms else GEMMA1_NORMS),
             **(QK_NORMS if config.use_qk_norm else {})}
    names = {"token_embedding.embeddings": "embed_tokens.weight", "final_norm.scale": "norm.weight"}
    for i in range(config.num_layers):
        names.update({f"block_{i}/{ours}": f"layers.{i}.{theirs}" for ours, theirs in block.items()})
    return names


def tensor_names(config) -> dict:
    """The name map of ``config``'s generation: Gemma 1-3 here, Gemma 4 in ``hf_gemma4.py``
    (whose values may be ``(name, half)``: one half of a fused expert tensor)."""
    return hf_gemma4.hf_tensor_names(config) if isinstance(config, Gemma4Config) else hf_tensor_names(config)


def plan_tensors(folder: str, config: GemmaConfig) -> dict:
    """{file: [(our weight path, tensor name, half)]}, after checking every tensor and shard exists."""
    located = tensor_files(folder)
    if os.path.isfile(os.path.join(folder, INDEX_FILE)):
        sources = INDEX_FILE
    else:
        sources = ", ".join(sorted({os.path.basename(f) for f in located.values()}))
    prefix = next((p for p in PREFIXES if p + "embed_tokens.weight" in located), None)
    if prefix is None:
        raise HuggingFaceFormatError(f"{folder}: no tensor 'model.embed_tokens.weight' (nor "
                                     f"'language_model.model.embed_tokens.weight') in {sources}: "
                                     "not a Gemma checkpoint?")
    plan = {}
    for ours, theirs in tensor_names(config).items():
        theirs, half = theirs if isinstance(theirs, tuple) else (theirs, None)
        name = prefix + theirs
        if name not in located:
            raise HuggingFaceFormatError(f"{folder}: tensor {name!r} is missing from {sources} "
                                         f"(needed for {ours})")
        plan.setdefault(shard_of(folder, located, name), []).append((ours, name, half))
    return plan


def shard_of(folder: str, located: dict, name: str) -> str:
    """The file that holds tensor ``name`` (``located``: ``tensor_files(folder)``), checked to exist."""
    if not os.path.isfile(located[name]):
        raise HuggingFaceFormatError(f"{folder}: shard {os.path.basename(located[name])!r} is missing "
                                     f"({INDEX_FILE} puts tensor {name!r} in it)")
    return located[name]


def load_hf_weights(backbone, folder: str, plan: dict | None = None) -> None:
    """Stream every tensor, one at a time, into ``backbone``'s variables, checking shapes."""
    import ml_dtypes  # noqa: F401  (lets NumPy read bfloat16 tensors)

    plan = plan or plan_tensors(folder, backbone.config)
    variables = backbone.weights_by_path()
    with tqdm(total=sum(map(len, plan.values())), desc=f"Loading {os.path.basename(os.path.abspath(folder))}",
              unit="tensor", leave=False) as bar:
        for file, tensors in plan.items():
            with safe_open(file) as f:
                available = set(f.keys())
                for ours, name, half in tensors:
                    if name not in available:
                        raise HuggingFaceFormatError(f"{file}: tensor {name!r} is missing (the index says it "
                                                     f"is in this shard; needed for {ours})")
                    variable = variables[ours]
                    shape = tuple(f.get_slice(name).get_shape())
                    expected = hf_gemma4.theirs_shape(tuple(variable.shape), ours, half)
                    if shape != expected:
                        raise HuggingFaceFormatError(f"{file}: tensor {name!r} has shape {shape}, but the config "
                                                     f"expects {expected} for {ours}")
                    value = hf_gemma4.to_ours(f.get_tensor(name).astype(np.float32), ours, half)
                    variable.assign(np.ascontiguousarray(value).astype(variable.dtype, copy=False))
                    bar.update()
