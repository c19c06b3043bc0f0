"""Every Gemma text checkpoint a Colab or Kaggle user has, as rows of the preset table (``gemma_kit/presets.py``).

Names, Kaggle handles and official parameter counts are keras-hub 0.32's
(``keras_hub/src/models/gemma/gemma_presets.py`` and ``gemma3/gemma3_presets.py``,
the ``params`` metadata); the hyper-parameters are those of Google's reference
code (``gemma_pytorch`` ``gemma/config.py``, MaxText ``configs/models/gemma*.yml``)
and the Hugging Face ``config.json`` files, summarised in the Gemma 1, 2 and 3
technical reports:

| family    | sizes           | attention (KV heads)        | layers         | window | soft caps | max length |
|-----------|-----------------|-----------------------------|----------------|--------|-----------|------------|
| Gemma 1   | 2B, 7B          | 2B: MQA (1), 7B: MHA (16)   | all global     | -      | -         | 8,192      |
| CodeGemma | 2B, 7B          | as Gemma 1                  | all global     | -      | -         | 8,192      |
| Gemma 2   | 2B, 9B, 27B     | GQA (4, 8, 16)              | local, global  | 4,096  | 50 / 30   | 8,192      |
| Gemma 3   | 270M, 1B        | MQA (1)                     | 5 local, 1 glb | 512    | -         | 32,768     |
| Gemma 3   | 4B, 12B, 27B    | GQA (4, 8, 16)              | 5 local, 1 glb | 1,024  | -         | 131,072    |

Queries are scaled by ``query_pre_attn_scalar ** -0.5``: that is ``head_dim`` (256)
except in the two 27B models, which use ``hidden_dim / num_query_heads``
(Gemma 2 27B: 4608 / 32 = 144; Gemma 3 27B: 5376 / 32 = 168; both have head_dim 128).
Gemma 3 4B, 12B and 27B stretch the global layers' RoPE positions linearly by 8
(the 128K context); 270M and 1B do not.

This module downloads nothing: each row's ``kaggle_handle`` is what
``gemma_kit.load(name)`` fetches.
"""

from __future__ import annotations

from typing import Dict

from ...nn.config import Preset
from .config import GemmaConfig, gemma2_layer_types, gemma3_layer_types


# -- the architectures: one function per generation, one row per size --------------------------

#        size: (layers, hidden, query heads, KV heads, head_dim, MLP width)
_GEMMA1 = {"2b": (18, 2048, 8, 1, 256, 16384),
           "7b": (28, 3072, 16, 16, 256, 24576)}
_GEMMA2 = {"2b": (26, 2304, 8, 4, 256, 9216),
           "9b": (42, 3584, 16, 8, 256, 14336),
           "27b": (46, 4608, 32, 16, 128, 36864)}
_GEMMA3 = {"270m": (18, 640, 4, 1, 256, 2048),
           "1b": (26, 1152, 4, 1, 256, 6912),
           "4b": (34, 2560, 8, 4, 256, 10240),
           "12b": (48, 3840, 16, 8, 256, 15360),
           "27b": (62, 5376, 32, 16, 128, 21504)}


def _shape(table, size):
    layers, hidden, heads, kv_heads, head_dim, mlp = table[size]
    return dict(num_layers=layers, hidden_dim=hidden, num_query_heads=heads, num_kv_heads=kv_heads,
                head_dim=head_dim, intermediate_dim=mlp)


def gemma1_config(size: str, name: str) -> GemmaConfig:
    """Gemma 1 and CodeGemma: every layer global, no soft caps, no post norms."""
    return GemmaConfig(vocab_size=256_000, **_shape(_GEMMA1, size), max_sequence_length=8192, name=name)


def gemma2_config(size: str, name: str) -> GemmaConfig:
    """Gemma 2: local/global alternation (window 4096), soft caps 50 and 30, post norms."""
    shape = _shape(_GEMMA2, size)
    # 27B: queries scaled by (hidden / heads) ** -0.5 = 144 ** -0.5, not head_dim (128) ** -0.5.
    scalar = shape["hidden_dim"] / shape["num_query_heads"] if size == "27b" else shape["head_dim"]
    return GemmaConfig(vocab_size=256_000, **shape, layer_types=gemma2_layer_types(shape["num_layers"]),
                       sliding_window=4096, query_pre_attn_scalar=float(scalar), attn_soft_cap=50.0,
                       final_soft_cap=30.0, use_post_norms=True, max_sequence_length=8192, name=name)


def gemma3_config(size: str, name: str) -> GemmaConfig:
    """Gemma 3 (text): 5 local + 1 global, QK-norm, RoPE bases 10K / 1M, long context from 4B up."""
    shape = _shape(_GEMMA3, size)
    small = size in ("270m", "1b")
    # 27B: 5376 / 32 = 168; every other size uses head_dim (256).
    scalar = shape["hidden_dim"] / shape["num_query_heads"] if size == "27b" else shape["head_dim"]
    return GemmaConfig(vocab_size=262_144, **shape, layer_types=gemma3_layer_types(shape["num_layers"]),
                       sliding_window=512 if small else 1024, query_pre_attn_scalar=float(scalar),
                       use_post_norms=True, use_qk_norm=True, rope_base_global=1_000_000.0,
                       rope_base_local=10_000.0, rope_scaling_factor=1.0 if small else 8.0,
                       max_sequence_length=32_768 if small else 131_072, name=name)


# -- the presets --------------------------------------------------------------------------------

# keras-hub's `params` metadata (the text-only presets for Gemma 3).
_OFFICIAL = {
    ("gemma", "2b"): 2_506_172_416, ("gemma", "7b"): 8_537_680_896,
    ("gemma2", "2b"): 2_614_341_888, ("gemma2", "9b"): 9_241_705_984, ("gemma2", "27b"): 27_227_128_320,
    ("gemma3", "270m"): 268_098_176, ("gemma3", "1b"): 999_885_952, ("gemma3", "4b"): 3_880_099_328,
    ("gemma3", "12b"): 11_765_788_416, ("gemma3", "27b"): 27_009_002_240,
}
_BUILDERS = {"gemma": gemma1_config, "gemma2": gemma2_config, "gemma3": gemma3_config}

# name: (generation, size, Kaggle handle as in keras-hub 0.32, Hugging Face repo id)
_TABLE = {
    # Gemma 1 (February 2024) and the 1.1 instruction-tuned update (April 2024).
    "gemma_2b_en": ("gemma", "2b", "kaggle://keras/gemma/keras/gemma_2b_en/3", "google/gemma-2b"),
    "gemma_7b_en": ("gemma", "7b", "kaggle://keras/gemma/keras/gemma_7b_en/4", "google/gemma-7b"),
    "gemma_instruct_2b_en": ("gemma", "2b", "kaggle://keras/gemma/keras/gemma_instruct_2b_en/3",
                             "google/gemma-2b-it"),
    "gemma_instruct_7b_en": ("gemma", "7b", "kaggle://keras/gemma/keras/gemma_instruct_7b_en/4",
                             "google/gemma-7b-it"),
    "gemma_1.1_instruct_2b_en": ("gemma", "2b", "kaggle://keras/gemma/keras/gemma_1.1_instruct_2b_en/4",
                                 "google/gemma-1.1-2b-it"),
    "gemma_1.1_instruct_7b_en": ("gemma", "7b", "kaggle://keras/gemma/keras/gemma_1.1_instruct_7b_en/5",
                                 "google/gemma-1.1-7b-it"),
    # Gemma 2 (June-July 2024).
    "gemma2_2b_en": ("gemma2", "2b", "kaggle://keras/gemma2/keras/gemma2_2b_en/2", "google/gemma-2-2b"),
    "gemma2_9b_en": ("gemma2", "9b", "kaggle://keras/gemma2/keras/gemma2_9b_en/4", "google/gemma-2-9b"),
    "gemma2_27b_en": ("gemma2", "27b", "kaggle://keras/gemma2/keras/gemma2_27b_en/3", "google/gemma-2-27b"),
    "gemma2_instruct_2b_en": ("gemma2", "2b", "kaggle://keras/gemma2/keras/gemma2_instruct_2b_en/2",
                              "google/gemma-2-2b-it"),
    "gemma2_instruct_9b_en": ("gemma2", "9b", "kaggle://keras/gemma2/keras/gemma2_instruct_9b_en/4",
                              "google/gemma-2-9b-it"),
    "gemma2_instruct_27b_en": ("gemma2", "27b", "kaggle://keras/gemma2/keras/gemma2_instruct_27b_en/3",
                               "google/gemma-2-27b-it"),
    # Gemma 3 (March 2025; 270M August 2025). From 4B up the Hugging Face repos hold the
    # multimodal model: a SigLIP vision encoder besides the text decoder, and an embedding
    # with 262,208 rows (64 more than the 262,144-token text vocabulary). keras-hub's
    # `*_text` presets, and the official counts here, are the text decoder alone.
    "gemma3_270m": ("gemma3", "270m", "kaggle://keras/gemma3/keras/gemma3_270m/3", "google/gemma-3-270m"),
    "gemma3_instruct_270m": ("gemma3", "270m", "kaggle://keras/gemma3/keras/gemma3_instruct_270m/4",
                             "google/gemma-3-270m-it"),
    "gemma3_1b": ("gemma3", "1b", "kaggle://keras/gemma3/keras/gemma3_1b/3", "google/gemma-3-1b-pt"),
    "gemma3_instruct_1b": ("gemma3", "1b", "kaggle://keras/gemma3/keras/gemma3_instruct_1b/3",
                           "google/gemma-3-1b-it"),
    "gemma3_4b_text": ("gemma3", "4b", "kaggle://keras/gemma3/keras/gemma3_4b_text/2", "google/gemma-3-4b-pt"),
    "gemma3_instruct_4b_text": ("gemma3", "4b", "kaggle://keras/gemma3/keras/gemma3_instruct_4b_text/3",
                                "google/gemma-3-4b-it"),
    "gemma3_12b_text": ("gemma3", "12b", "kaggle://keras/gemma3/keras/gemma3_12b_text/3",
                        "google/gemma-3-12b-pt"),
    "gemma3_instruct_12b_text": ("gemma3", "12b", "kaggle://keras/gemma3/keras/gemma3_instruct_12b_text/3",
                                 "google/gemma-3-12b-it"),
    "gemma3_27b_text": ("gemma3", "27b", "kaggle://keras/gemma3/keras/gemma3_27b_text/4",
                        "google/gemma-3-27b-pt"),
    "gemma3_instruct_27b_text": ("gemma3", "27b", "kaggle://keras/gemma3/keras/gemma3_instruct_27b_text/3",
                                 "google/gemma-3-27b-it"),
    # CodeGemma (April 2024; 1.1 in May 2024): the Gemma 1 architecture trained on code.
    "code_gemma_2b_en": ("gemma", "2b", "kaggle://keras/codegemma/keras/code_gemma_2b_en/2",
                         "google/codegemma-2b"),
    "code_gemma_7b_en": ("gemma", "7b", "kaggle://keras/codegemma/keras/code_gemma_7b_en/3",
                         "google/codegemma-7b"),
    "code_gemma_instruct_7b_en": ("gemma", "7b", "kaggle://keras/codegemma/keras/code_gemma_instruct_7b_en/3",
                                  "google/codegemma-7b-it"),
    "code_gemma_1.1_2b_en": ("gemma", "2b", "kaggle://keras/codegemma/keras/code_gemma_1.1_2b_en/2",
                             "google/codegemma-1.1-2b"),
    "code_gemma_1.1_instruct_7b_en": ("gemma", "7b",
                                      "kaggle://keras/codegemma/keras/code_gemma_1.1_instruct_7b_en/3",
                                      "google/codegemma-1.1-7b-it"),
}

PRESETS: Dict[str, Preset] = {
    name: Preset(name, _BUILDERS[generation](size, name), _OFFICIAL[generation, size], handle, repo,
                 "keras-hub 0.32 preset metadata (params)")
    for name, (generation, size, handle, repo) in _TABLE.items()
}
