"""What every model config shares: a frozen dataclass that travels as JSON.

``GemmaConfig`` (``models/gemma/config.py``) and ``GriffinConfig``
(``models/griffin/config.py``) are plain dataclasses of numbers. This mixin gives
both ``to_dict`` / ``from_dict`` (what ``get_config`` stores, so a ``.keras`` file
round-trips), ``to_json`` and ``replace``.
"""

from __future__ import annotations

import dataclasses
import json


class SerializableConfig:
    """``to_dict`` / ``from_dict`` / ``to_json`` / ``replace`` for a frozen config dataclass.

    Tuple fields (the layer pattern) travel as JSON lists and come back as tuples.
    """

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} fields: {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def check(self, problems, positive=()) -> None:
        """One ValueError listing every problem found (``problems``, plus each ``positive`` field that is not)."""
        problems = [f"{field} must be positive, got {getattr(self, field)}" for field in positive
                    if int(getattr(self, field)) <= 0] + list(problems)
        if problems:
            raise ValueError(f"Invalid {type(self).__name__}: " + "; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Preset:
    """One row of the preset table (``gemma_kit/presets.py``): a named official checkpoint.

    Every family fills the same fields, so ``gemma_kit.load(name)`` and ``gemma-kit info name``
    treat a Gemma and a RecurrentGemma name alike.
    """

    name: str                  # e.g. "gemma_2b_en" (keras-hub's name where keras-hub has the model)
    config: SerializableConfig
    official_parameters: int   # the count its publisher gives (keras-hub metadata, model card)
    kaggle_handle: str         # e.g. "kaggle://keras/gemma/keras/gemma_2b_en/3": what ``load(name)`` fetches
    hf_repo: str               # the matching Hugging Face repo id, e.g. "google/gemma-2b"
    official_source: str       # where ``official_parameters`` comes from
