"""An adapter as a file: only the LoRA matrices, with what it takes to check them on loading.

    save_adapter(model, "fim.lora.safetensors")   # ~1 MB for rank 4 on query/value of Gemma 3 270M
    load_adapter(base_model, "fim.lora.safetensors")

The file is safetensors: one tensor per LoRA matrix, named by its layer path
(``block_3/attention/query/lora_kernel_a``; Gemma 4's experts: ``block_3/experts/gate_lora_kernel_a``,
one (experts, in, rank) stack), and a metadata header with the
format, rank, alpha, target layer names and the model's name and shape. Loading
enables LoRA with the file's rank and targets (or checks the ones already
enabled), then checks every tensor's name and shape before assigning anything:
an adapter trained on another model fails with the reason, never half-loaded.
"""

from __future__ import annotations

import json
import os

import numpy as np
from keras import ops

from .lora import backbone_of, enable_lora, lora_layers, lora_state, lora_variables, remove_lora

FORMAT = "gemma_kit.lora.v1"


class AdapterMismatchError(ValueError):
    """The adapter file does not fit the model (rank, targets, layer names or shapes)."""


def _lora_variables(model) -> dict:
    """{path inside the backbone: variable} for every LoRA matrix."""
    out = {}
    for layer in lora_layers(model):
        for variable in lora_variables(layer):
            out[variable.path.split("/", 1)[1]] = variable   # drop the model's own name
    return out


def _model_shape(backbone) -> dict:
    return {"name": backbone.config.name, "vocab_size": backbone.config.vocab_size, "hidden_dim": backbone.width}


def save_adapter(model, path) -> str:
    """Write the LoRA weights of ``model`` (rank, alpha, targets in the header) to ``path``; returns it."""
    from safetensors.numpy import save_file

    state = lora_state(model)
    if state is None:
        raise ValueError("This model has no LoRA weights to save: call enable_lora(model, ...) first")
    backbone = backbone_of(model)
    tensors = {name: np.ascontiguousarray(ops.convert_to_numpy(v), np.float32)
               for name, v in _lora_variables(model).items()}
    metadata = {"format": FORMAT, "rank": str(state["rank"]), "alpha": repr(state["alpha"]),
                "targets": json.dumps(state["targets"]), "model": json.dumps(_model_shape(backbone))}
    if getattr(model, "fim_markers", None):                 # a FIM adapter: its marker tokens (fim.py)
        metadata["fim_markers"] = json.dumps(model.fim_markers)
        metadata["fim_order"] = getattr(model, "fim_order", "psm")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata=metadata)
    return path


def read_adapter_metadata(path) -> dict:
    """``{"rank", "alpha", "targets", "model"}`` from an adapter file's header."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No adapter file at {path}")
    with safe_open(path, framework="np") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise AdapterMismatchError(f"{path} is not a gemma_kit LoRA adapter (header format "
                                   f"{metadata.get('format')!r}, expected {FORMAT!r})")
    meta = {"rank": int(metadata["rank"]), "alpha": float(metadata["alpha"]),
            "targets": json.loads(metadata["targets"]), "model": json.loads(metadata["model"])}
    if "fim_markers" in metadata:
        meta["fim_markers"] = json.loads(metadata["fim_markers"])
        meta["fim_order"] = metadata.get("fim_order", "psm")      # files from before SPM existed were PSM
    return meta


def load_adapter(model, path) -> dict:
    """Enable LoRA as the file says (or check the LoRA already enabled) and load its weights.

    Raises ``AdapterMismatchError`` naming what differs: rank, targets, or a tensor's name or shape.
    Returns the file's metadata. A FIM adapter's markers and order (``fim_markers``, ``fim_order``) are set
    on the model (``fim.enable_fim``), so that ``model.complete(before, after)`` uses them.
    """
    meta = read_adapter_metadata(path)
    if "fim_markers" in meta and hasattr(model, "tokenizer"):
        from ..fim import fim_token_ids
        fim_token_ids(model.tokenizer, meta["fim_markers"])      # this vocabulary must have the markers
    backbone = backbone_of(model)
    ours = _model_shape(backbone)
    if (meta["model"].get("vocab_size"), meta["model"].get("hidden_dim")) != (ours["vocab_size"], ours["hidden_dim"]):
        raise AdapterMismatchError(f"{path} was trained on {meta['model']}, this model is {ours}")
    state = lora_state(backbone)
    if state is None:
        enable_lora(model, rank=meta["rank"], targets=meta["targets"], alpha=meta["alpha"], verbose=False)
        try:
            _assign(model, path)
        except AdapterMismatchError:
            remove_lora(model)                       # leave the model as it was
            raise
        _set_fim_markers(model, meta)
        return meta
    if (state["rank"], state["targets"], state["alpha"]) != (meta["rank"], meta["targets"], meta["alpha"]):
        raise AdapterMismatchError(
            f"{path} holds rank {meta['rank']} (alpha {meta['alpha']}) on {meta['targets']}, but this model "
            f"has LoRA rank {state['rank']} (alpha {state['alpha']}) on {state['targets']}")
    _assign(model, path)
    _set_fim_markers(model, meta)
    return meta


def _set_fim_markers(model, meta):
    if "fim_markers" in meta and hasattr(model, "tokenizer"):
        from ..fim import enable_fim
        enable_fim(model, meta["fim_markers"], meta["fim_order"])


def _assign(model, path):
    """Check every tensor of the file against the model's LoRA matrices, then assign them all."""
    from safetensors.numpy import load_file

    tensors, variables = load_file(os.fspath(path)), _lora_variables(model)
    missing, extra = sorted(set(variables) - set(tensors)), sorted(set(tensors) - set(variables))
    if missing or extra:
        raise AdapterMismatchError(f"{path} does not fit this model: missing {missing[:3]}"
                                   f"{'...' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
                                   f"{'...' if len(extra) > 3 else ''}")
    for name, variable in variables.items():
        if tuple(tensors[name].shape) != tuple(variable.shape):
            raise AdapterMismatchError(f"{path}: {name} has shape {tuple(tensors[name].shape)}, "
                                       f"the model expects {tuple(variable.shape)}")
    for name, variable in variables.items():
        variable.assign(tensors[name])
