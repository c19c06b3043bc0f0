"""The one preset table: every official checkpoint of every family, ``PRESETS[name]``.

Each family keeps its rows beside its model (``models/gemma/presets.py``,
``models/griffin/presets.py``); this file puts them in one dictionary with the
same fields for all (``nn/config.Preset``): the config, the official parameter
count and where it comes from, the Kaggle handle ``gemma_kit.load(name)``
fetches, and the Hugging Face repo.

| family          | names                                          | official count from          |
|-----------------|------------------------------------------------|------------------------------|
| Gemma 1, 2, 3   | ``gemma_2b_en`` ... ``gemma3_instruct_27b_text`` | keras-hub preset metadata    |
| CodeGemma       | ``code_gemma_2b_en`` ...                       | keras-hub preset metadata    |
| Gemma 4         | ``gemma4_2b`` ... ``gemma4_instruct_31b``      | the model card (rounded)     |
| RecurrentGemma  | ``recurrent_gemma_2b_en`` ...                  | the model card               |

``gemma_kit.load(name)`` and ``gemma-kit info name`` both read this table, so a
name one of them knows, the other knows too (tests/test_presets.py).
"""

from __future__ import annotations

import difflib
from typing import Dict

from .models.gemma.presets import PRESETS as GEMMA_PRESETS
from .models.gemma4.presets import PRESETS as GEMMA4_PRESETS
from .models.griffin.presets import PRESETS as GRIFFIN_PRESETS
from .nn.config import Preset

PRESETS: Dict[str, Preset] = {**GEMMA_PRESETS, **GEMMA4_PRESETS, **GRIFFIN_PRESETS}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a ValueError naming the closest preset names otherwise."""
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(str(name), list(PRESETS), n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise ValueError(f"Unknown preset {name!r}: {hint}known presets: {', '.join(sorted(PRESETS))}")


def preset_handle(name: str) -> str:
    """The ``kaggle://`` handle of a preset, e.g. ``kaggle://keras/gemma/keras/gemma_2b_en/3``."""
    return get_preset(name).kaggle_handle
