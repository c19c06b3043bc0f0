"""What a checkpoint format is: a ``Format`` row of the registry in ``loaders/__init__.py``.

Each format module (``gguf.py``, ``keras_hub.py``, ``huggingface.py``, ``deepmind.py``) defines
its ``Format`` objects and nothing happens on import; ``__init__.py`` lists them in the order
they are tried. Also here: the one helper every folder format shares.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    recognise: Callable[[str], bool]                 # path -> is it mine?
    load: Callable                                   # (path, dtype=None) -> (config, backbone, tokenizer)
    read_config: Optional[Callable[[str], object]] = None   # path -> config, no weights allocated


def folder_of(path) -> str:
    """The checkpoint folder for a folder, or for one of its files (``config.json``, a weight file)."""
    path = os.fspath(path)
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
