"""``kaggle://owner/model/framework/variation[/version]`` handles: a Kaggle model, downloaded to a folder.

The handle says nothing about the format; the folder is recognised like any local path:

- ``kaggle://keras/gemma/keras/gemma_2b_en/3``: a keras-hub preset folder (``keras_hub.py``);
- ``kaggle://google/recurrentgemma/pyTorch/2b``: ``2b.pt`` and ``tokenizer.model``, DeepMind's
  RecurrentGemma (``deepmind.py``).

Every preset of ``gemma_kit/presets.py`` has such a handle, so ``gemma_kit.load("gemma_2b_en")``
goes through here, as keras-hub's ``from_preset`` does.
"""

from __future__ import annotations

import os


def _kagglehub_download(handle: str) -> str:
    import kagglehub
    return kagglehub.model_download(handle)


DOWNLOAD = _kagglehub_download     # handle -> local folder; tests replace it


def resolve_kaggle_handle(rest: str) -> str:
    """The local folder for ``kaggle://keras/gemma/keras/gemma_2b_en/2`` (``rest`` is after ``kaggle://``)."""
    handle = rest.strip("/")
    parts = handle.split("/")
    if len(parts) not in (4, 5) or not all(parts) or (len(parts) == 5 and not parts[4].isdigit()):
        raise ValueError(f"'kaggle://{rest}' is not a Kaggle model handle: expected "
                         "kaggle://owner/model/framework/variation[/version], e.g. "
                         "kaggle://keras/gemma/keras/gemma_2b_en/2")
    try:
        return os.fspath(DOWNLOAD(handle))
    except ImportError:
        raise
    except Exception as error:   # network, licence not accepted, no credentials, unknown handle, ...
        raise RuntimeError(f"Could not download 'kaggle://{handle}' from Kaggle: {error}. Gemma models need "
                           "their licence accepted on the Kaggle model page and Kaggle credentials "
                           "(KAGGLE_USERNAME / KAGGLE_KEY or ~/.kaggle/kaggle.json); or download the "
                           "model yourself and pass its folder.") from error
