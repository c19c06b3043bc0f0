"""The data sets the kit made for its lessons, shipped inside the package.

    from gemma_kit import data
    data.names()                           # ["stdlib_fim"]
    splits = data.load("stdlib_fim")       # {"train": [...], "test": [...]}, each a list of dicts
    test = data.load("stdlib_fim", "test")  # one split
    data.path("stdlib_fim", "train")       # the file itself, to hand to your own code
    data.file("lesson07_griffin.safetensors")  # any other shipped file: trained weights, a tokenizer

A data set ``name`` is the JSON Lines files ``<name>_<split>.jsonl``. In the repository they
live in ``data/``, next to their provenance (``data/README.md``) and the script that made
them. ``setup.py`` maps that folder into the package as ``gemma_kit/datasets/``, so the wheel
(``make wheel``) carries them and a lesson reads them the same way in a clone, on Colab, on
Kaggle or in a bare folder: by name, never by a path relative to the notebook.
"""

from __future__ import annotations

from pathlib import Path

from .tuning.data import load_jsonl

_PACKAGE = Path(__file__).resolve().parent


def folder() -> Path:
    """Where the data sets are: ``gemma_kit/datasets/`` in an installed wheel, ``data/`` in a clone."""
    installed = _PACKAGE / "datasets"      # a wheel: setup.py's package_dir mapping put them here
    clone = _PACKAGE.parent / "data"       # an editable install or a checkout: the repository's own folder
    for candidate in (installed, clone):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"gemma_kit's data sets are missing: neither {installed} nor {clone} exists. "
                            "Reinstall the kit from its wheel (`make wheel`) or its repository.")


def names() -> list:
    """The data sets shipped with the kit, e.g. ``["stdlib_fim"]``."""
    return sorted({p.name.rsplit("_", 1)[0] for p in folder().glob("*_*.jsonl")})


def splits(name: str) -> list:
    """The splits of data set ``name``, e.g. ``["test", "train"]``."""
    found = sorted(split for stem, split in (p.stem.rsplit("_", 1) for p in folder().glob("*_*.jsonl")) if stem == name)
    if not found:
        raise KeyError(f"no data set named {name!r}; the kit ships {names()} (in {folder()})")
    return found


def path(name: str, split: str) -> Path:
    """The JSON Lines file of one split of a data set."""
    known = splits(name)
    if split not in known:
        raise KeyError(f"data set {name!r} has no split {split!r}; its splits are {known}")
    return folder() / f"{name}_{split}.jsonl"


def load(name: str, split: str | None = None):
    """One split as a list of dicts, or (``split=None``) every split in a dict ``{split: examples}``."""
    if split is not None:
        return load_jsonl(path(name, split))
    return {s: load_jsonl(path(name, s)) for s in splits(name)}


def file(filename: str) -> Path:
    """A shipped file that is not a JSON Lines split (trained weights, a tokenizer model), by its name."""
    found = folder() / filename
    if "/" in filename or "\\" in filename or not found.is_file():
        shipped = sorted(p.name for p in folder().iterdir() if p.is_file() and p.suffix != ".jsonl")
        raise FileNotFoundError(f"the kit ships no file named {filename!r} in {folder()}; it has {shipped}")
    return found
