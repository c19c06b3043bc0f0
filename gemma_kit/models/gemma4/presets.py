"""The Gemma 4 checkpoints (April 2026) as rows of the preset table (``gemma_kit/presets.py``).

Names and Kaggle handles are keras-hub's (``keras_hub/src/models/gemma4/gemma4_presets.py``,
keras-hub 0.29.1; the ``*_assistant`` speculative-decoding drafters are left out); the
Hugging Face repo ids are those of keras-hub's converter
(``tools/checkpoint_conversion/convert_gemma4_hf_checkpoints.py``, ``PRESET_MAP``). The
hyper-parameters are the ``text_config`` of each repo's ``config.json``; every checkpoint
is multimodal (a vision encoder, plus an audio encoder in E2B and E4B) and these rows
describe its text decoder alone, which is all ``Gemma4Config`` models:

| model   | layers | hidden | heads (KV local/global) | MLP width        | global | window | PLE | KV-shared | context |
|---------|--------|--------|-------------------------|------------------|--------|--------|-----|-----------|---------|
| E2B     | 35     | 1536   | 8 (1 / 1)               | 6144, x2 shared  | 1 in 5 | 512    | 256 | last 20   | 131,072 |
| E4B     | 42     | 2560   | 8 (2 / 2)               | 10240            | 1 in 6 | 512    | 256 | last 18   | 131,072 |
| 26B A4B | 30     | 2816   | 16 (8 / 2), K = V       | 2112 + 128 x 704 | 1 in 6 | 1024   | -   | -         | 262,144 |
| 31B     | 60     | 5376   | 32 (16 / 4), K = V      | 21504            | 1 in 6 | 1024   | -   | -         | 262,144 |

All four: head dim 256 on sliding ("local") layers and 512 on global ones, RoPE base
10,000 on sliding layers and 1,000,000 ("proportional", a quarter of each head rotated) on
global ones, the last layer always global, vocabulary 262,144 (tied embedding), final
logit soft cap 30, RMSNorm eps 1e-6. The 26B A4B runs, in every layer,
its dense MLP (2112 wide: the "shared expert") beside 128 routed experts of width 704, 8
chosen per token. "K = V": global layers have no value projection (``attention_k_eq_v``);
transformers uses ``num_global_key_value_heads`` only then, so E2B and E4B keep their
local KV head count on global layers.

Parameter counts (``Gemma4Config``'s, from shapes; they equal transformers 5.24's
``Gemma4ForCausalLM`` built on the meta device, parameters plus the ``layer_scalar``
buffers, to the unit). "+ encoders" adds the vision (and audio) towers with their
projections into the text width, counted the same way with ``Gemma4ForConditionalGeneration``
(vision: E2B 168,544,704, E4B 169,331,136, 26B A4B 572,794,416, 31B 575,743,536; audio:
E2B 307,184,384, E4B 308,757,248):

| model   | num_parameters() | effective_...() | active_...()   | + encoders     | official: model card; keras-hub |
|---------|------------------|-----------------|----------------|----------------|---------------------------------|
| E2B     | 4,628,569,379    | 2,279,759,139   | 2,279,759,139  | 5,104,298,467  | 2.3B eff., 5.1B with emb.; 5.1B |
| E4B     | 7,463,013,418    | 4,644,441,130   | 4,644,441,130  | 7,941,101,802  | 4.5B eff., 8B with emb.; 7.9B   |
| 26B A4B | 25,233,141,790   | 25,233,141,790  | 3,822,530,590  | 25,805,936,206 | 25.2B total, 3.8B active; 26B   |
| 31B     | 30,697,345,340   | 30,697,345,340  | 30,697,345,340 | 31,273,088,876 | 30.7B; 31B                      |

Where the gaps come from:

* E2B, E4B: "with embeddings" and keras-hub's ``params`` are the whole checkpoint: the
  text decoder, its per-layer-embedding (PLE) table (2.35B and 2.82B) and the vision
  (~150M in the model card) and audio (~300M) encoders. Ours plus the encoders is 5.10B
  (5.1B) and 7.94B (7.9B; "8B" rounds it). "Effective" leaves the PLE table out: E2B's
  2.28B is the model card's 2.3B. E4B's 4.64B is 3% above its "4.5B"; no reading of the
  card that leaves the encoders out gives 4.5B (total with encoders minus both embedding
  tables, 4.45B, does, but then E2B's would be 2.35B), so this one stays unexplained.
* 26B A4B, 31B: the model card's 25.2B total / 3.8B active and 30.7B are the text
  decoder alone: ours are 0.1% / 0.6% and 0.01% away. Their ~550M vision encoder makes
  the checkpoints 25.8B and 31.3B, which keras-hub rounds to its names (26B, 31B).

Sources of the hyper-parameters, each model checked against at least two:

* all four: Google's MaxText ``src/maxtext/configs/models/gemma4-{e2b,e4b,26b,31b}.yml``
  (layers, widths, heads, head dims, global KV heads, window, PLE, KV sharing, double-wide
  MLP, experts, RoPE bases and fraction, soft cap); the model card (layers, windows,
  context lengths, 128 experts with 8 active).
* E2B: a verbatim ``google/gemma-4-E2B`` ``config.json`` in a Rust loader's tests (the
  whole ``text_config``, the 4:1 ``layer_types``, ``rope_parameters``); rasbt's
  LLMs-from-scratch ``ch05/17_gemma4`` notebook (``get_gemma4_dense_config("E2B")``).
* E4B: a full ``text_config`` (``layer_types`` listed) in a Go MLX port's tests; the
  LLMs-from-scratch notebook; NVIDIA Megatron-Bridge's Gemma 4 E4B recipe.
* 26B A4B: a full ``text_config`` in the same Go tests (its 131,072 context is the only
  disagreement: two other copies and the model card say 262,144 / 256K); a Swift test
  trimmed from ``mlx-community/gemma-4-26b-a4b-it-4bit``'s ``config.json``.
* 31B: a ``text_config`` dump in a Rust loader's tests (truncated to 6 layers, every
  other field verbatim); a Python test's ``google/gemma-4-31B`` config (60 layers, 5:1);
  the ``EXPECTED_CONFIG`` of a JAX engine's ``google/gemma-4-31B-it`` loader.

This module downloads nothing: each row's ``kaggle_handle`` is what ``gemma_kit.load(name)`` fetches.
"""

from __future__ import annotations

from typing import Dict

from ...nn.config import Preset
from .config import Gemma4Config, gemma4_layer_types

# -- the architectures ---------------------------------------------------------------------------

#          size: (layers, hidden, query heads, KV heads, MLP width, a global layer every, window, context)
_GEMMA4 = {"e2b": (35, 1536, 8, 1, 6144, 5, 512, 131_072),
           "e4b": (42, 2560, 8, 2, 10240, 6, 512, 131_072),
           "26b_a4b": (30, 2816, 16, 8, 2112, 6, 1024, 262_144),
           "31b": (60, 5376, 32, 16, 21504, 6, 1024, 262_144)}

# What each size adds to the shared decoder (transformers' names in the comments).
_EXTRAS = {
    # num_kv_shared_layers=20, use_double_wide_mlp, hidden_size_per_layer_input=256
    "e2b": dict(num_kv_shared_layers=20, use_double_wide_mlp=True, per_layer_input_dim=256,
                per_layer_vocab_size=262_144),
    # num_kv_shared_layers=18, hidden_size_per_layer_input=256 (no double-wide MLP)
    "e4b": dict(num_kv_shared_layers=18, per_layer_input_dim=256, per_layer_vocab_size=262_144),
    # attention_k_eq_v, num_global_key_value_heads=2, enable_moe_block: 128 experts, top 8, width 704
    "26b_a4b": dict(attention_k_eq_v=True, num_global_kv_heads=2, num_experts=128, num_experts_per_token=8,
                    expert_intermediate_dim=704),
    # attention_k_eq_v, num_global_key_value_heads=4
    "31b": dict(attention_k_eq_v=True, num_global_kv_heads=4),
}

SIZES = tuple(_GEMMA4)


def gemma4_config(size: str, name: str) -> Gemma4Config:
    """Gemma 4's text decoder: head dims 256 / 512, RoPE 10K / 1M (a quarter rotated), soft cap 30."""
    layers, hidden, heads, kv_heads, mlp, every, window, context = _GEMMA4[size]
    return Gemma4Config(
        vocab_size=262_144, hidden_dim=hidden, num_layers=layers, num_query_heads=heads, num_kv_heads=kv_heads,
        head_dim=256, intermediate_dim=mlp, layer_types=gemma4_layer_types(layers, every), sliding_window=window,
        final_soft_cap=30.0, rope_base_local=10_000.0, rope_base_global=1_000_000.0, rope_fraction_global=0.25,
        global_head_dim=512, rms_norm_eps=1e-6, max_sequence_length=context, name=name, **_EXTRAS[size])


# -- the presets ---------------------------------------------------------------------------------

# size: (official count, where it comes from). Each is the most precise figure Google publishes;
# see the module docstring for what each one covers.
_OFFICIAL = {
    "e2b": (5_100_000_000, "model card: 2.3B effective, 5.1B with embeddings (incl. vision+audio "
                           "encoders); keras-hub 0.29.1 params 5.1B"),
    "e4b": (7_900_000_000, "keras-hub 0.29.1 params (model card: 4.5B effective, 8B with embeddings; "
                           "incl. vision+audio encoders)"),
    "26b_a4b": (25_200_000_000, "model card: 25.2B total, 3.8B active (text decoder; keras-hub 0.29.1: 26B "
                                "with the vision encoder)"),
    "31b": (30_700_000_000, "model card: 30.7B (text decoder; keras-hub 0.29.1: 31B with the vision encoder)"),
}

# name: (size, Kaggle handle as in keras-hub 0.29.1, Hugging Face repo id)
_TABLE = {
    "gemma4_2b": ("e2b", "kaggle://keras/gemma4/keras/gemma4_2b/2", "google/gemma-4-E2B"),
    "gemma4_instruct_2b": ("e2b", "kaggle://keras/gemma4/keras/gemma4_instruct_2b/2", "google/gemma-4-E2B-it"),
    "gemma4_4b": ("e4b", "kaggle://keras/gemma4/keras/gemma4_4b/2", "google/gemma-4-E4B"),
    "gemma4_instruct_4b": ("e4b", "kaggle://keras/gemma4/keras/gemma4_instruct_4b/2", "google/gemma-4-E4B-it"),
    "gemma4_26b_a4b": ("26b_a4b", "kaggle://keras/gemma4/keras/gemma4_26b_a4b/2", "google/gemma-4-26B-A4B"),
    "gemma4_instruct_26b_a4b": ("26b_a4b", "kaggle://keras/gemma4/keras/gemma4_instruct_26b_a4b/2",
                                "google/gemma-4-26B-A4B-it"),
    "gemma4_31b": ("31b", "kaggle://keras/gemma4/keras/gemma4_31b/2", "google/gemma-4-31B"),
    "gemma4_instruct_31b": ("31b", "kaggle://keras/gemma4/keras/gemma4_instruct_31b/2", "google/gemma-4-31B-it"),
}

PRESETS: Dict[str, Preset] = {
    name: Preset(name, gemma4_config(size, name), _OFFICIAL[size][0], handle, repo, _OFFICIAL[size][1])
    for name, (size, handle, repo) in _TABLE.items()
}
