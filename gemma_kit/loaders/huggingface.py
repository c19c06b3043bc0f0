"""Load Gemma checkpoints in the Hugging Face format (a transformers folder), and ``hf://org/name`` handles.

A transformers checkpoint is a folder:
- ``config.json``: the hyper-parameters. ``model_type`` is ``gemma``, ``gemma2`` or ``gemma3_text``, or
  ``gemma3`` (the multimodal model: we load the language model its ``text_config`` describes);
- ``model.safetensors``, or shards ``model-00001-of-00002.safetensors``, ... that
  ``model.safetensors.index.json`` lists (tensor name -> shard file);
- ``tokenizer.model`` (SentencePiece) and/or ``tokenizer.json`` (see ``hf_tokenizer.py``).

Conventions to undo while loading:
- ``nn.Linear`` weights are ``[out, in]``; a Keras ``Dense`` kernel is ``(in, out)``: transpose.
- Norm weights need nothing: transformers' Gemma RMSNorm also multiplies by ``1 + weight``.
- Names: Gemma 1 has two norms a block and calls the one before the MLP ``post_attention_layernorm``;
  Gemma 2 and 3 use that name for the norm *after* attention and call the pre-MLP one
  ``pre_feedforward_layernorm``. So one tensor name means different things in different generations.

config.json -> GemmaConfig is ``hf_config.py``; the tokenizer files are ``hf_tokenizer.py``.
"""

from __future__ import annotations

import json
import os

import numpy as np
from tqdm.auto import tqdm

from ..config import GemmaConfig
from . import SCHEMES, Format, register_format
from .hf_config import CONFIG_FILE, HuggingFaceFormatError, config_from_hf
from .hf_tokenizer import load_hf_tokenizer

SINGLE_FILE, INDEX_FILE = "model.safetensors", "model.safetensors.index.json"
__all__ = ["config_from_hf", "read_hf_config", "load_huggingface", "hf_tensor_names", "HuggingFaceFormatError",
           "DOWNLOAD", "resolve_hf_handle", "HubDownloadError"]


def _folder(path: str) -> str:
    """The checkpoint folder for a folder, its config.json, or one of its weight files."""
    path = os.fspath(path)
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def _model_name(folder: str) -> str:
    """``gemma-3-1b-it`` for ``.../models--google--gemma-3-1b-it/snapshots/<hash>`` or ``.../gemma-3-1b-it``."""
    parts = os.path.abspath(folder).split(os.sep)
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3].split("--")[-1].lower()
    return parts[-1].lower() or "gemma"


def read_hf_config(path) -> GemmaConfig:
    folder = _folder(path)
    config_path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise HuggingFaceFormatError(f"{folder}: config.json is missing (a Hugging Face checkpoint folder "
                                     "holds config.json next to its .safetensors weights)")
    try:
        with open(config_path, encoding="utf-8") as f:
            values = json.load(f)
    except json.JSONDecodeError as error:
        raise HuggingFaceFormatError(f"{config_path}: not valid JSON ({error})") from error
    return config_from_hf(values, config_path, name=_model_name(folder))


# -- tensor names -----------------------------------------------------------------------------------
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


# -- the weights ------------------------------------------------------------------------------------
def _safe_open(path):
    try:
        from safetensors import safe_open
    except ImportError as error:
        raise ImportError("Reading .safetensors weights needs the 'safetensors' package: "
                          "pip install safetensors") from error
    return safe_open(path, framework="np")


def _tensor_files(folder: str) -> dict:
    """{tensor name: file path} from the index, or from the headers of the .safetensors files."""
    index = os.path.join(folder, INDEX_FILE)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise HuggingFaceFormatError(f"{index}: no 'weight_map' (tensor name -> shard file)")
        return {name: os.path.join(folder, shard) for name, shard in weight_map.items()}
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        others = [f for f in os.listdir(folder) if f.endswith((".bin", ".pt", ".pth", ".h5", ".msgpack"))]
        hint = f" (found {', '.join(sorted(others))}: only .safetensors weights are supported)" if others else ""
        raise HuggingFaceFormatError(f"{folder}: no weights: expected {SINGLE_FILE}, or {INDEX_FILE} and "
                                     f"its shards{hint}")
    located = {}
    for file in ([SINGLE_FILE] if SINGLE_FILE in files else files):
        with _safe_open(os.path.join(folder, file)) as f:
            located.update({name: os.path.join(folder, file) for name in f.keys()})
    return located


def plan_tensors(folder: str, config: GemmaConfig) -> dict:
    """{file: [(our weight path, tensor name)]}, after checking every tensor and shard exists."""
    located = _tensor_files(folder)
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
    for ours, theirs in hf_tensor_names(config).items():
        name = prefix + theirs
        if name not in located:
            raise HuggingFaceFormatError(f"{folder}: tensor {name!r} is missing from {sources} "
                                         f"(needed for {ours})")
        if not os.path.isfile(located[name]):
            raise HuggingFaceFormatError(f"{folder}: shard {os.path.basename(located[name])!r} is missing "
                                         f"({INDEX_FILE} puts tensor {name!r} in it)")
        plan.setdefault(located[name], []).append((ours, name))
    return plan


def load_hf_weights(backbone, folder: str, plan: dict | None = None) -> None:
    """Stream every tensor, one at a time, into ``backbone``'s variables, checking shapes."""
    import ml_dtypes  # noqa: F401  (lets NumPy read bfloat16 tensors)

    plan = plan or plan_tensors(folder, backbone.config)
    variables = backbone.weights_by_path()
    with tqdm(total=sum(map(len, plan.values())), desc=f"Loading {os.path.basename(os.path.abspath(folder))}",
              unit="tensor", leave=False) as bar:
        for file, tensors in plan.items():
            with _safe_open(file) as f:
                available = set(f.keys())
                for ours, name in tensors:
                    if name not in available:
                        raise HuggingFaceFormatError(f"{file}: tensor {name!r} is missing (the index says it "
                                                     f"is in this shard; needed for {ours})")
                    variable = variables[ours]
                    kernel = ours.endswith("kernel")
                    expected = tuple(variable.shape)[::-1] if kernel else tuple(variable.shape)
                    shape = tuple(f.get_slice(name).get_shape())
                    if shape != expected:
                        raise HuggingFaceFormatError(f"{file}: tensor {name!r} has shape {shape}, but the config "
                                                     f"expects {expected} for {ours}")
                    value = f.get_tensor(name).astype(np.float32)
                    value = value.T if kernel else value                    # [out, in] -> (in, out)
                    variable.assign(np.ascontiguousarray(value).astype(variable.dtype, copy=False))
                    bar.update()


def load_huggingface(path, dtype=None):
    """(config, backbone, tokenizer) from a Hugging Face folder (or its config.json / a weight file)."""
    from ..backbone import GemmaBackbone

    folder = _folder(path)
    config = read_hf_config(folder)
    plan = plan_tensors(folder, config)              # every problem with the files, before allocating
    tokenizer = load_hf_tokenizer(folder)
    backbone = GemmaBackbone(config, dtype=dtype, random_init=False)
    load_hf_weights(backbone, folder, plan)
    return config, backbone, tokenizer


def is_hf_checkpoint(path) -> bool:
    """A folder with config.json or .safetensors weights, or one of those files."""
    path = os.fspath(path)
    if os.path.isfile(path):
        name = os.path.basename(path)
        return name in (CONFIG_FILE, INDEX_FILE) or name.endswith(".safetensors")
    if not os.path.isdir(path):
        return False
    names = os.listdir(path)
    return CONFIG_FILE in names or INDEX_FILE in names or any(n.endswith(".safetensors") for n in names)


# -- hf://org/name[@revision] -----------------------------------------------------------------------
ALLOW_PATTERNS = [CONFIG_FILE, "generation_config.json", "*.safetensors", INDEX_FILE, "tokenizer.model",
                  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def _snapshot_download(**kwargs) -> str:
    from huggingface_hub import snapshot_download
    return snapshot_download(**kwargs)


DOWNLOAD = _snapshot_download     # (repo_id=, revision=, allow_patterns=) -> local folder; tests replace it


class HubDownloadError(FileNotFoundError):
    """An ``hf://`` handle that could not be turned into a local folder (network, gated or unknown repo)."""


def resolve_hf_handle(rest: str) -> str:
    """The local folder for ``hf://org/name`` or ``hf://org/name@revision`` (``rest`` is after ``hf://``)."""
    repo_id, at, revision = rest.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")) or (at and not revision):
        raise ValueError(f"'hf://{rest}': expected hf://org/name or hf://org/name@revision")
    try:
        return os.fspath(DOWNLOAD(repo_id=repo_id, revision=revision or None, allow_patterns=ALLOW_PATTERNS))
    except ImportError:
        raise
    except Exception as error:   # network, gated repository, unknown name, ...
        raise HubDownloadError(f"Could not download 'hf://{rest}' from the Hugging Face Hub: "
                               f"{str(error).strip().rstrip('.')}. Gemma repositories are gated: accept the "
                               "licence on the model page and log in (`hf auth login`), or download the folder "
                               "yourself and pass its path.") from error


register_format(Format("huggingface", is_hf_checkpoint, load_huggingface, read_hf_config))
SCHEMES["hf"] = resolve_hf_handle
