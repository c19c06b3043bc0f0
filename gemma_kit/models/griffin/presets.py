"""The four official RecurrentGemma checkpoints, as rows of the preset table (``gemma_kit/presets.py``).

Hyper-parameters are recurrentgemma's ``Preset.RECURRENT_GEMMA_2B_V1`` and
``RECURRENT_GEMMA_9B_V1`` (``recurrentgemma/common.py``); the parameter counts
are the model cards' (2.68B and 8.58B, to the parameter: ``GriffinConfig.num_parameters``
equals them, tests/test_griffin.py). keras-hub has no RecurrentGemma, so the
Kaggle handle is DeepMind's own model ``google/recurrentgemma``, PyTorch variant
(one ``2b.pt``-style file and ``tokenizer.model``, read by ``loaders/deepmind.py``).
"""

from __future__ import annotations

from typing import Dict

from ...nn.config import Preset
from .config import GriffinConfig, griffin_block_types


def recurrent_gemma_config(size: str, name: str) -> GriffinConfig:
    """recurrentgemma's ``Preset.RECURRENT_GEMMA_2B_V1`` / ``RECURRENT_GEMMA_9B_V1``."""
    width, heads, blocks = {"2b": (2560, 10, 26), "9b": (4096, 16, 38)}[size]
    return GriffinConfig(vocab_size=256_000, width=width, mlp_expanded_width=3 * width, num_heads=heads,
                         lru_width=width, block_types=griffin_block_types(blocks), attention_window_size=2048,
                         logits_soft_cap=30.0, embeddings_scale_by_sqrt_dim=True, name=name)


_OFFICIAL = {"2b": 2_682_862_080, "9b": 8_579_977_216}

PRESETS: Dict[str, Preset] = {
    name: Preset(name, recurrent_gemma_config(size, name), _OFFICIAL[size],
                 f"kaggle://google/recurrentgemma/pyTorch/{variant}", repo,
                 "RecurrentGemma model card (Kaggle google/recurrentgemma)")
    for name, size, repo, variant in (
        ("recurrent_gemma_2b_en", "2b", "google/recurrentgemma-2b", "2b"),
        ("recurrent_gemma_instruct_2b_en", "2b", "google/recurrentgemma-2b-it", "2b-it"),
        ("recurrent_gemma_9b_en", "9b", "google/recurrentgemma-9b", "9b"),
        ("recurrent_gemma_instruct_9b_en", "9b", "google/recurrentgemma-9b-it", "9b-it"),
    )
}
