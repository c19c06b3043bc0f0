"""Gemma 4 on a device mesh: its layout rules, bytes per device, and one training step on 8 devices.

The rules (``gemma_kit/distributed/layouts.py``, ``gemma4_rules``) are checked in pure Python
on every backend, on the tiny models of ``tests/distributed_worker.py`` (the numbers of
``tests/gemma4_tiny.py``'s ``moe`` and ``e2b``) and on the real presets, whose shapes come from
``variable_specs`` without allocating a weight. The 8-device tests run the worker in two
subprocesses (``XLA_FLAGS`` must be set before JAX starts): the ``moe`` model on meshes 2x4
(4 experts, 1 per device) and 4x2 (the 2 local KV heads split, the 1 global KV head not), the
``e2b`` model on 2x4 and 1x8 (the PLE table's 56 packed columns over 8 devices). Each is
compared with the same model on one device: the loss before and after one AdamW step, and
every weight after that step.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distributed_worker import PLANS, gemma4_configs
from gemma_kit import distributed, read_config
from gemma_kit.distributed import MODEL

ROOT = Path(__file__).resolve().parents[1]
TINY = gemma4_configs()
PRESETS = ("gemma4_2b", "gemma4_4b", "gemma4_26b_a4b", "gemma4_31b")
R = (None, None)          # a replicated matrix


def layouts(config, model, **lora):
    """{path without the model name: axes} for every variable of ``config`` with ``model`` devices."""
    rules = distributed.layout_rules(config, model)
    return {spec.path.split("/", 1)[1]: distributed.axes_for(rules, spec.path, len(spec.shape))
            for spec in distributed.variable_specs(config, **lora)}


# -- the rules, in pure Python --------------------------------------------------------------------

def test_moe_rules_heads_experts_router():
    moe = TINY["gemma4_moe"]           # 4 query heads; KV heads: 2 local, 1 global (block_5); 4 experts
    four = layouts(moe, 4)
    assert four["block_0/attention/query/kernel"] == (None, MODEL)                 # 1 head per device
    assert four["block_5/attention/query/kernel"] == (None, MODEL)                 # global: 4 heads of 16
    assert four["block_0/attention/attention_output/kernel"] == (MODEL, None)
    assert four["block_0/attention/key/kernel"] == four["block_0/attention/value/kernel"] == R   # 2 over 4
    assert four["block_5/attention/key/kernel"] == R and "block_5/attention/value/kernel" not in four  # K = V
    for name in ("gate", "up", "down"):
        assert four[f"block_3/experts/{name}"] == (MODEL, None, None)              # expert parallelism
    assert four["block_3/experts/router/kernel"] == R
    assert four["block_3/experts/router_scale"] == four["block_3/experts/per_expert_scale"] == (None,)
    assert four["block_3/layer_scalar"] == four["block_3/post_ffw_norm_experts/scale"] == (None,)
    assert four["block_3/mlp/gate/kernel"] == (None, MODEL) and four["token_embedding/embeddings"] == (MODEL, None)
    two = layouts(moe, 2)
    assert two["block_0/attention/key/kernel"] == two["block_0/attention/value/kernel"] == (None, MODEL)
    assert two["block_5/attention/key/kernel"] == R                                # one KV head: never cut
    eight = layouts(moe, 8)            # 4 heads and 4 experts do not split over 8: each expert's width does
    assert eight["block_0/attention/query/kernel"] == R
    assert eight["block_0/experts/gate"] == (None, None, MODEL) and eight["block_0/experts/down"] == (None, MODEL, None)
    with_lora = layouts(moe, 4, lora_rank=2, lora_targets=("query", "experts"))
    assert with_lora["block_0/experts/gate_lora_kernel_a"] == (MODEL, None, None)   # A, B go with their expert
    assert with_lora["block_0/attention/query/lora_kernel_a"] == R


def test_e2b_rules_shared_kv_wide_mlp_and_the_ple_table():
    e2b = TINY["gemma4_e2b"]           # 1 KV head; blocks 4-6 borrow keys/values, MLP 96 wide there
    for model in (2, 4, 8):
        axes = layouts(e2b, model)
        assert all(axes[f"block_{i}/attention/{kv}/kernel"] == R for i in range(4) for kv in ("key", "value"))
        assert not any(f"block_{i}/attention/key" in path for i in (4, 5, 6) for path in axes)
        assert axes["per_layer_embedding/token_table/embeddings"] == (None, MODEL)            # 7 x 8 = 56 columns
        assert axes["per_layer_embedding/context_projection/kernel"] == (None, MODEL)
        assert axes["block_0/per_layer_gate/kernel"] == axes["block_0/per_layer_projection/kernel"] == R
        assert axes["block_6/mlp/gate/kernel"] == (None, MODEL) and axes["block_6/mlp/down/kernel"] == (MODEL, None)
    assert layouts(e2b, 8)["block_0/attention/query/kernel"] == R                 # 4 heads over 8


@pytest.fixture(scope="module")
def preset_specs():
    return {name: distributed.variable_specs(read_config(name)) for name in PRESETS}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_layouts_split_whole_units_and_every_rule_is_used(preset_specs, name):
    config = read_config(name)
    for model in (2, 4, 8, 16):
        rules = distributed.layout_rules(config, model)
        used, axes = set(), {}
        for spec in preset_specs[name]:
            axes[spec.path.split("/", 1)[1]] = distributed.axes_for(rules, spec.path, len(spec.shape))
            used.update(r.pattern for r in rules if re.fullmatch(r.pattern, spec.path))
            for size, axis in zip(spec.shape, axes[spec.path.split("/", 1)[1]]):
                assert axis != MODEL or size % model == 0, (spec.path, spec.shape, model)
        lora_only = {r.pattern for r in rules if "lora" in r.pattern}             # no adapters in these specs
        assert used == {r.pattern for r in rules} - lora_only, f"{name}: rules matching no variable"
        own_global = [i for i in range(config.num_layers)
                      if config.layer_types[i] == "global" and config.kv_sharing(i) != "reuse"]
        last = f"block_{own_global[-1]}"                          # the last global layer with keys of its own
        if name == "gemma4_2b":                                                    # 1 KV head everywhere
            assert axes["block_0/attention/key/kernel"] == axes[f"{last}/attention/key/kernel"] == R
            assert axes["per_layer_embedding/token_table/embeddings"] == (None, MODEL)   # 35 x 256 columns
        if name == "gemma4_26b_a4b":   # KV heads: 8 local, 2 global; 128 experts
            assert axes[f"{last}/attention/key/kernel"] == ((None, MODEL) if model == 2 else R)
            assert axes["block_0/attention/key/kernel"] == ((None, MODEL) if model <= 8 else R)
            assert axes["block_0/experts/gate"] == (MODEL, None, None)


@pytest.mark.parametrize("name", PRESETS)
def test_bytes_per_device_count_every_parameter(name):
    config = read_config(name)
    table = distributed.device_memory(name, "1x8", dtype="bfloat16")
    print(table)
    assert sum(whole for whole, _ in table.rows.values()) == 2 * config.num_parameters()
    assert table.rows.get("PLE table", (0, 0)) == (2 * config.per_layer_embedding_parameters(),
                                                   2 * config.per_layer_embedding_parameters() // 8)
    if config.num_experts:
        whole, each = table.rows["experts (+ router)"]
        router = config.hidden_dim * config.num_experts + config.hidden_dim + config.num_experts   # replicated
        assert each * 8 - whole == 7 * 2 * router * config.num_layers                   # the experts split 8 ways
    assert ("host memory" in str(table)) == bool(config.per_layer_input_dim)


# -- 8 simulated devices ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{family: the worker's results}, plus the trained weights as {family: {mesh: {path: array}}}."""
    folder = tmp_path_factory.mktemp("gemma4_distributed")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", GEMMA_KIT_JAX_CACHE="0")
    env.pop("XLA_FLAGS", None)
    processes = {family: subprocess.Popen([sys.executable, str(ROOT / "tests" / "distributed_worker.py"), family,
                                           str(folder / f"{family}.json")], cwd=ROOT, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for family in TINY}
    results = {"weights": {}}
    for family, process in processes.items():
        output, _ = process.communicate(timeout=1200)
        assert process.returncode == 0, f"{family} failed:\n{output[-4000:]}"
        results[family] = json.loads((folder / f"{family}.json").read_text())["full"]
        results["weights"][family] = {mesh: dict(np.load(folder / f"{family}.json.full.{mesh}.npz"))
                                      for mesh in ("single",) + PLANS[family][1]}
    return results


CASES = [(family, mesh) for family in sorted(TINY) for mesh in PLANS[family][1]]


@pytest.mark.once
@pytest.mark.parametrize("family, mesh", CASES)
def test_every_weight_and_optimizer_slot_has_the_layout_of_its_rule(runs, family, mesh):
    run = runs[family][mesh]
    for path, (real, asked) in run["layouts"].items():                 # read back from the jax.Arrays
        assert real == asked, path
    for path, axes in run["rule_layouts"].items():
        assert run["layouts"][path][0] == axes, path
    name = TINY[family].name + "/"                                     # weights, not optimizer slots
    real = {path[len(name):]: axes for path, (axes, _) in run["layouts"].items() if path.startswith(name)}
    if family == "gemma4_moe":
        assert real["block_2/experts/gate"] == real["block_2/experts/down"] == [MODEL, None, None]
        assert real["block_2/experts/router/kernel"] == [None, None] and real["block_2/layer_scalar"] == [None]
        assert real["block_5/attention/key/kernel"] == [None, None]                # the one global KV head
        assert real["block_0/attention/key/kernel"] == ([None, MODEL] if mesh == "4x2" else [None, None])
        assert real["block_0/attention/query/kernel"] == [None, MODEL]
    else:
        assert real["per_layer_embedding/token_table/embeddings"] == [None, MODEL]
        assert real["block_3/attention/key/kernel"] == [None, None]
        assert real["block_6/mlp/up/kernel"] == [None, MODEL]


@pytest.mark.once
@pytest.mark.parametrize("family, mesh", CASES)
def test_one_training_step_matches_one_device(runs, family, mesh):
    single, sharded = runs[family]["single"], runs[family][mesh]
    losses = np.abs(np.array(sharded["losses"]) - np.array(single["losses"])).max()
    weights = runs["weights"][family]
    difference = max(float(np.abs(weights[mesh][path] - value).max()) for path, value in weights["single"].items())
    print(f"{family} {mesh}: losses before/after one step {np.round(sharded['losses'], 6).tolist()} "
          f"(one device {np.round(single['losses'], 6).tolist()}), max |loss diff| {losses:.1e}, "
          f"max |weight diff| {difference:.1e}, the step moved weights by up to {single['moved']:.1e}")
    assert set(weights[mesh]) == set(weights["single"])
    assert losses < 1e-5
    assert difference < 1e-4 and single["moved"] > 1e-3          # equal, and not because nothing moved


@pytest.mark.once
@pytest.mark.parametrize("family, mesh", CASES)
def test_bytes_per_device_match_the_arrays(runs, family, mesh):
    memory = runs[family][mesh]["memory"]
    assert len(memory["measured_weights"]) == 8
    assert set(memory["measured_weights"].values()) == {memory["predicted_weights"]}
    assert set(memory["measured_optimizer"].values()) == {memory["predicted_optimizer"]}
