"""gemma_kit: the Gemma family of open models in readable Keras 3.

    import gemma_kit
    model = gemma_kit.load("gemma3_270m")        # the real Gemma 3 270M, shipped on PyPI
    print(model.generate("The capital of France is", max_new_tokens=16))

Runs on the JAX (default), TensorFlow and PyTorch backends: set
``KERAS_BACKEND`` before the first ``import keras``. The layout is described in
``docs/ARCHITECTURE.md``: ``nn/`` holds the building blocks every family shares,
``models/<family>/`` each family with the same file names.
"""

import contextlib
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

from . import data  # noqa: E402  (the lessons' data sets: data.load("stdlib_fim"))
from .drafting import Assistant, DraftModel, PromptLookup  # noqa: E402
from .fim import fim_prompt  # noqa: E402
from .loaders import NAMED_SOURCES, load_parts, read_config  # noqa: E402
from .loaders.hf_gemma4_assistant import load_assistant  # noqa: E402
from .memory import memory_plan  # noqa: E402
from .model import GemmaModel  # noqa: E402
from .models import (Gemma4Backbone, Gemma4Config, GemmaBackbone, GemmaConfig, GriffinBackbone,  # noqa: E402
                     GriffinConfig, backbone_class)
from .presets import PRESETS  # noqa: E402
from .sampling import SAMPLERS  # noqa: E402

__version__ = "0.1.0"


def versions() -> dict:
    """What this lesson runs on: Python, the kit, Keras and its backend, keras-hub, NumPy.

    Lessons print it first, so a stored output says which versions made it (``constraints.txt``
    pins the ones the test suite passed with).
    """
    import platform
    from importlib import metadata

    import keras

    backend = keras.backend.backend()
    packages = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}
    found = {"python": platform.python_version(), "gemma-kit": __version__, "keras": keras.__version__}
    for name in (packages.get(backend, backend), "keras-hub", "numpy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["backend"] = backend
    return found


def load(source: str = "gemma3_270m", dtype=None, quantize=None, **options) -> GemmaModel:
    """Load a model by preset name (``"gemma3_270m"``, ``"gemma4_instruct_2b"``, ...) or from a checkpoint path.

    ``dtype``: the Keras dtype policy for weights and compute, e.g. ``"float32"``
    (the default), ``"bfloat16"`` (a TPU, an A100) or ``"float16"`` (a Colab/Kaggle T4,
    which has no fast bfloat16; the residual stream stays float32, ``nn/precision.py``). ``quantize="int8"``: weight-only int8 (``nn/int8.py``),
    each tensor quantized as it is read, so the float model is never held whole.
    ``options`` go to the format's loader, e.g. ``attention_window_size=...`` for a
    RecurrentGemma checkpoint.
    """
    from .nn.int8 import built_in_int8

    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8' (weight-only int8), got {quantize!r}")
    with built_in_int8() if quantize else contextlib.nullcontext():
        config, backbone, tokenizer, path = load_parts(source, dtype=dtype, **options)
    return GemmaModel(backbone, tokenizer, config, source=str(source))


__all__ = ["load", "GemmaModel", "GemmaBackbone", "GemmaConfig", "Gemma4Backbone", "Gemma4Config", "GriffinBackbone",
           "GriffinConfig", "SAMPLERS",
           "NAMED_SOURCES", "PRESETS", "backbone_class", "read_config", "memory_plan", "fim_prompt", "PromptLookup",
           "DraftModel", "Assistant", "load_assistant", "versions", "data"]
