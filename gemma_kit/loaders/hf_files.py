"""The files of a Hugging Face (transformers) folder, and how to read them; the format is ``huggingface.py``.

A transformers checkpoint is a folder:
- ``config.json``: the hyper-parameters; ``model_type`` names the architecture (``hf_config.py``);
- ``model.safetensors``, or shards ``model-00001-of-00002.safetensors``, ... that
  ``model.safetensors.index.json`` lists (tensor name -> shard file);
- ``tokenizer.model`` (SentencePiece) and/or ``tokenizer.json`` (see ``hf_tokenizer.py``).

A ``.safetensors`` file is a small JSON header (each tensor's name, dtype, shape and byte range)
followed by the raw bytes: ``safe_open`` reads the header, ``get_tensor`` one tensor, memory-mapped.
Which tensor goes where in a model is each family's business: ``hf_gemma.py``, ``hf_griffin.py``.
"""

from __future__ import annotations

import json
import os

CONFIG_FILE = "config.json"
SINGLE_FILE, INDEX_FILE = "model.safetensors", "model.safetensors.index.json"


class HuggingFaceFormatError(ValueError):
    """A Hugging Face folder we cannot read; the message names the file and the field or tensor."""


def model_name(folder: str) -> str:
    """``gemma-3-1b-it`` for ``.../models--google--gemma-3-1b-it/snapshots/<hash>`` or ``.../gemma-3-1b-it``."""
    parts = os.path.abspath(folder).split(os.sep)
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3].split("--")[-1].lower()
    return parts[-1].lower() or "gemma"


def read_config_json(folder: str) -> dict:
    """The contents of ``folder/config.json``."""
    config_path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise HuggingFaceFormatError(f"{folder}: config.json is missing (a Hugging Face checkpoint folder "
                                     "holds config.json next to its .safetensors weights)")
    try:
        with open(config_path, encoding="utf-8") as f:
            values = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HuggingFaceFormatError(f"{config_path}: not valid JSON ({error})") from error
    if not isinstance(values, dict):
        raise HuggingFaceFormatError(f"{config_path}: expected a JSON object, got {type(values).__name__}")
    return values


def safe_open(path):
    """``safetensors.safe_open(path)`` for NumPy; a file it cannot read raises an error naming the file."""
    try:
        from safetensors import SafetensorError, safe_open as open_safetensors
    except ImportError as error:
        raise ImportError("Reading .safetensors weights needs the 'safetensors' package: "
                          "pip install safetensors") from error
    try:
        return open_safetensors(path, framework="np")
    except SafetensorError as error:      # a truncated download, an empty file, not a .safetensors file
        raise HuggingFaceFormatError(f"{path}: not a readable .safetensors file ({error}); a truncated "
                                     "or interrupted download? Download it again.") from error


def tensor_files(folder: str) -> dict:
    """{tensor name: file path} from the index, or from the headers of the .safetensors files."""
    index = os.path.join(folder, INDEX_FILE)
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f).get("weight_map")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
            raise HuggingFaceFormatError(f"{index}: not a valid index ({error})") from error
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
        with safe_open(os.path.join(folder, file)) as f:
            located.update({name: os.path.join(folder, file) for name in f.keys()})
    return located
