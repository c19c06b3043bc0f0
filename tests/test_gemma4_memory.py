"""memory_plan for Gemma 4: the PLE table apart, all experts stored but few active, the shared KV cache.

The KV cache is checked against the tensors ``init_cache`` allocates for the tiny Gemma 4
models of ``tests/distributed_worker.py`` (the numbers of ``tests/gemma4_tiny.py``'s ``moe``
and ``e2b``); the presets against counts worked out by hand, without building a model; the
training estimate against XLA's own buffer assignment for one compiled training step.
"""

import json
import os
import subprocess
import sys
import tracemalloc

import keras
import pytest

import gemma_kit
from distributed_worker import gemma4_configs
from gemma_kit.memory import GB, kv_cache_bytes, lora_parameters, memory_plan
from gemma_kit.models import Gemma4Backbone
from gemma_kit.nn import cache_bytes
from gemma_kit.tuning import enable_lora
from gemma_kit.tuning.lora import remove_lora

TINY = gemma4_configs()                        # "gemma4_moe", "gemma4_e2b"


@pytest.fixture(scope="module")
def backbones():
    """{(family, dtype): a tiny Gemma 4 backbone}; zeros are enough to count shapes."""
    return {(family, dtype): Gemma4Backbone(config, dtype=dtype, random_init=False)
            for family, config in TINY.items() for dtype in ("float32", "bfloat16", "mixed_bfloat16")}


# -- the KV cache -------------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(TINY))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "mixed_bfloat16"])
@pytest.mark.parametrize("length", [5, 20])                   # shorter and longer than the window of 8
def test_kv_cache_equals_the_cache_the_model_allocates(backbones, family, dtype, length):
    plan = memory_plan(TINY[family], dtype=dtype, optimizer=None, batch_size=2, sequence_length=length)
    assert plan.kv_cache_bytes == cache_bytes(backbones[family, dtype].init_cache(2, length))


def test_kv_cache_by_hand():
    # Tiny e2b: layers 0-3 keep a cache (3 local: 1 KV head of 8, window 8; 1 global: 1 KV head of 16);
    # layers 4-6 reuse layer 2's or 3's keys and values and keep none.
    e2b = TINY["gemma4_e2b"]
    assert [e2b.kv_sharing(i) for i in range(7)] == [None, None, "store", "store", "reuse", "reuse", "reuse"]
    assert kv_cache_bytes(e2b, 2, 20, 4) == 2 * 2 * 4 * (3 * 1 * 8 * 8 + 1 * 1 * 16 * 20)
    # Tiny moe: 5 local layers with 2 KV heads of 8, 1 global layer with 1 KV head of 16 (keys = values:
    # the cache still holds both, values being the normed keys before RoPE).
    assert kv_cache_bytes(TINY["gemma4_moe"], 1, 20, 2) == 2 * 1 * 2 * (5 * 2 * 8 * 8 + 1 * 1 * 16 * 20)
    # E2B: 15 of 35 layers keep a cache (12 local: 1 x 256, window 512; 3 global: 1 x 512), bfloat16.
    assert memory_plan("gemma4_2b", dtype="bfloat16", optimizer=None).kv_cache_bytes == \
        2 * 2 * (12 * 256 * 512 + 3 * 512 * 1024)
    # 26B A4B: 25 local layers of 8 x 256 (window 1024), 5 global of 2 x 512.
    assert memory_plan("gemma4_26b_a4b", dtype="bfloat16", optimizer=None).kv_cache_bytes == \
        2 * 2 * (25 * 8 * 256 * 1024 + 5 * 2 * 512 * 1024)


# -- parameters: what is stored, what sits on the accelerator, what a token computes with ----------

@pytest.mark.parametrize("family", sorted(TINY))
def test_counts_match_the_model(backbones, family):
    backbone, config = backbones[family, "float32"], TINY[family]
    plan = memory_plan(config, dtype="float32", optimizer="adamw", sequence_length=16)
    stored = sum(int(keras.ops.size(v)) for v in backbone.weights)
    table = backbone.per_layer_embedding.token_table.embeddings if config.per_layer_input_dim else None
    assert plan.parameters == stored
    assert plan.ple_bytes == (4 * int(keras.ops.size(table)) if table is not None else 0)
    assert plan.weights_bytes + plan.ple_bytes == 4 * stored
    assert plan.trainable_parameters == sum(int(keras.ops.size(v)) for v in backbone.trainable_weights)


@pytest.mark.parametrize("family", sorted(TINY))
def test_int8_counts_match_the_quantized_model(family):
    """int8 keeps the experts float32 (stored and read as such) and quantizes the PLE table."""
    from gemma_kit.nn.int8 import quantize_backbone
    from test_memory import _int8_counts

    backbone = Gemma4Backbone(TINY[family], random_init=False)
    quantize_backbone(backbone)
    int8, left_float = _int8_counts(backbone)
    experts = sum(int(keras.ops.size(v)) for v in backbone.weights if v.path.endswith(("experts/gate", "experts/up", "experts/down")))
    assert bool(experts) == bool(TINY[family].num_experts)
    plan = memory_plan(TINY[family], optimizer=None, quantize="int8", sequence_length=16)
    expected = (int8 + left_float - experts) * 1.125 + experts * 4                # experts stay float32
    assert abs(plan.weights_bytes + plan.ple_bytes - expected) <= 1


@pytest.mark.parametrize("family", sorted(TINY))
@pytest.mark.parametrize("targets", [("query", "value"), ("query", "key", "value", "attention_output")])
def test_lora_count_matches_the_adapters_keras_creates(backbones, family, targets):
    # The moe model's global layer has no value kernel (keys = values), e2b's last 3 layers no key or value.
    backbone = backbones[family, "float32"]
    counts = enable_lora(backbone, rank=2, targets=targets, verbose=False)
    remove_lora(backbone)
    assert lora_parameters(TINY[family], 2, targets) == counts["trainable"]
    plan = memory_plan(TINY[family], lora_rank=2, lora_targets=targets, sequence_length=16)
    assert plan.trainable_parameters == counts["trainable"]


def test_e2b_on_a_t4_without_allocating_weights():
    config = gemma_kit.read_config("gemma4_2b")
    tracemalloc.start()
    plan = memory_plan("gemma4_2b", dtype="bfloat16", optimizer=None, budget_gb=16)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000                                   # counts from the config: no 9 GB of weights
    assert plan.parameters == config.num_parameters() == 4_628_569_379
    assert plan.weights_bytes == 2 * config.effective_parameters() == 2 * 2_279_759_139
    assert plan.ple_bytes == 2 * 262_144 * 35 * 256              # vocabulary x layers x 256, bfloat16
    assert plan.total_bytes == plan.weights_bytes + plan.ple_bytes + plan.kv_cache_bytes
    assert plan.total_bytes_with_ple_on_host == plan.weights_bytes + plan.kv_cache_bytes
    assert 9.2 < plan.total_bytes / GB < 9.3 and 4.5 < plan.total_bytes_with_ple_on_host / GB < 4.6
    assert plan.fits["Colab T4"] and plan.fits["budget"]
    assert plan.active_parameters == config.effective_parameters()   # no experts
    # A decoded token reads the effective weights and its own row of the PLE table.
    assert plan.weight_bytes_per_token == 2 * (config.effective_parameters() + 35 * 256)


def test_26b_a4b_stores_every_expert_but_computes_eight():
    config = gemma_kit.read_config("gemma4_26b_a4b")
    plan = memory_plan("gemma4_26b_a4b", dtype="bfloat16", optimizer=None, budget_gb=16)
    assert plan.weights_bytes == 2 * 25_233_141_790 and plan.ple_bytes == 0
    assert plan.active_parameters == config.active_parameters() == 3_822_530_590
    assert plan.flops_per_token == 2 * 3_822_530_590 and plan.weight_bytes_per_token == 2 * 3_822_530_590
    assert plan.fits == {"Colab T4": False, "Kaggle 2xT4": False, "Kaggle TPU v3-8": True, "budget": False}
    assert plan.total_bytes_with_ple_on_host is None


def test_full_fine_tuning_keeps_the_ple_table_on_the_accelerator():
    lora = memory_plan("gemma4_2b", dtype="bfloat16", lora_rank=4, sequence_length=512)
    full = memory_plan("gemma4_2b", dtype="bfloat16", sequence_length=512)
    assert lora.total_bytes_with_ple_on_host == lora.total_bytes - lora.ple_bytes    # a frozen table
    assert full.total_bytes_with_ple_on_host is None                                  # a trained one
    assert full.trainable_parameters == full.parameters - 35                          # not the layer_scalars


def test_the_printed_plan_says_it_in_words():
    e2b = memory_plan("gemma4_2b", dtype="bfloat16", optimizer=None, budget_gb=16)
    moe = memory_plan("gemma4_26b_a4b", dtype="bfloat16", optimizer=None, budget_gb=16)
    text, html = str(e2b), e2b._repr_html_()
    print(text, moe, sep="\n\n")
    for words in ("PLE table", "per-layer embedding (PLE) table, 2,348,810,240 parameters", "host memory",
                  "then the accelerator needs 4.57 GB and the host 4.70 GB", "the last 20 of 35 layers reuse",
                  "keep no cache", "global layers 1 KV head(s) of size 512"):
        assert words in text and words in html, words
    for words in ("All 128 experts", "computed by 8 of them", "3,822,530,590 active parameters", "runs every expert",
                  "global layers 2 KV head(s) of size 512", "about 7.6 GFLOPs"):
        assert words in str(moe), words
    assert "PLE" not in str(moe) and "reuse" not in str(moe)
    assert "full fine-tuning updates it" in str(memory_plan("gemma4_2b", dtype="bfloat16", sequence_length=512))
    assert json.dumps(moe.to_dict())
    assert memory_plan("gemma_2b_en").notes == ()                 # Gemma 1-3 plans print as before


# -- the training estimate against XLA's buffer assignment ----------------------------------------

XLA = r"""
import json, sys
import numpy as np
import keras
from gemma_kit.memory import memory_plan
from gemma_kit.models import Gemma4Backbone, Gemma4Config

out = {}
for name, spec in json.loads(sys.argv[1]).items():
    config = Gemma4Config.from_dict(spec["config"])
    model = Gemma4Backbone(config, random_init=False)
    tokens = np.zeros((spec["batch"], spec["seq"]), "int32")
    model.compile(optimizer=keras.optimizers.AdamW(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model._symbolic_build(data_batch=(tokens, tokens, None))
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                 optimizer_variables=True, metrics_variables=True)
    import jax
    step = jax.jit(model.train_step, donate_argnums=0).lower(state, (tokens, tokens, None)).compile()
    memory = step.memory_analysis()      # what XLA allocates: inputs (weights, AdamW state) + temporaries
    plan = memory_plan(config, batch_size=spec["batch"], sequence_length=spec["seq"], optimizer="adamw",
                       backend="jax")
    out[name] = [plan.total_bytes, memory.argument_size_in_bytes + memory.temp_size_in_bytes]
print(json.dumps(out))
"""

SMALL = dict(vocab_size=8192, hidden_dim=128, num_layers=6, num_query_heads=4, head_dim=32, global_head_dim=64,
             sliding_window=64, layer_types=["local", "local", "global"] * 2, final_soft_cap=30.0)
ESTIMATES = {   # batch 2 x 128 tokens
    "moe": dict(SMALL, num_kv_heads=2, num_global_kv_heads=1, attention_k_eq_v=True, intermediate_dim=256,
                num_experts=8, num_experts_per_token=2, expert_intermediate_dim=64),
    "e2b": dict(SMALL, num_kv_heads=1, intermediate_dim=256, num_kv_shared_layers=2, use_double_wide_mlp=True,
                per_layer_input_dim=32),
}


@pytest.mark.once
def test_training_estimate_matches_xla_buffer_assignment():
    """JAX's compiled step knows exactly what it allocates (``memory_analysis``); the process's peak
    memory on a CPU also holds the compiler's own (about 0.3-0.5 GB for these graphs), which an
    accelerator does not, so this is the fair comparison for the activation terms Gemma 4 adds."""
    specs = {name: {"batch": 2, "seq": 128, "config": config} for name, config in ESTIMATES.items()}
    result = subprocess.run([sys.executable, "-c", XLA, json.dumps(specs)], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    for name, (plan, xla) in json.loads(result.stdout.strip().splitlines()[-1]).items():
        print(f"{name}: plan {plan / 1e6:.1f} MB, XLA {xla / 1e6:.1f} MB, ratio {plan / xla:.3f}")
        assert 0.9 <= plan / xla <= 1.1, name
