"""gemma_kit.distributed: meshes, layout maps, bytes per device, multi-host start, and 8-device runs.

The 8-device tests run ``tests/distributed_worker.py`` in subprocesses (JAX needs
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before it starts), one per
model family, on meshes 1x8, 2x4 and 8x1, and compare against the same model on one
device: the layouts read back from the arrays, the training losses (full fine-tuning
and LoRA, AdamW, 3 steps), greedy generation, and the bytes held by each device.
The other tests are pure Python and run on every backend.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gemma_kit import distributed, read_config
from gemma_kit.distributed import MODEL

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("gemma3_gqa", "gemma1_mqa", "griffin")
MESHES = ("1x8", "2x4", "8x1")


# -- meshes and their errors ------------------------------------------------------------------------

def test_mesh_shapes_and_errors():
    assert distributed.parse_mesh("2x4") == (2, 4)
    assert distributed.parse_mesh((8, 1)) == (8, 1)
    with pytest.raises(ValueError, match="DATAxMODEL"):
        distributed.parse_mesh("2-4")
    with pytest.raises(ValueError, match="at least 1"):
        distributed.parse_mesh("0x8")
    with pytest.raises(ValueError, match="needs 16 devices but only 8"):
        distributed.check_mesh_fits_devices("2x8", 8)
    with pytest.raises(ValueError, match=r"uses 4 of the 8 devices.*1x8, 2x4, 4x2, 8x1"):
        distributed.check_mesh_fits_devices("2x2", 8)
    assert distributed.check_mesh_fits_devices("2x4", 8) == (2, 4)
    with pytest.raises(ValueError, match="batch_size=6 cannot be split over the 4 data-parallel replicas"):
        distributed.check_batch_size("4x2", 6)
    distributed.check_batch_size("4x2", 8)


def test_device_mesh_on_this_machine():
    import keras
    if keras.backend.backend() != "jax":
        with pytest.raises(RuntimeError, match="needs the JAX backend"):
            distributed.device_mesh("1x1")
        return
    count = len(keras.distribution.list_devices())
    mesh = distributed.device_mesh(f"1x{count}")
    assert tuple(mesh.shape) == (1, count) and tuple(mesh.axis_names) == ("batch", "model")
    with pytest.raises(ValueError, match=f"needs {2 * count} devices"):
        distributed.device_mesh(f"2x{count}")


# -- layout rules --------------------------------------------------------------------------------------

def _split_axes(name, model):
    config = read_config(name)
    rules = distributed.layout_rules(config, model)
    return {spec.path.split("/", 1)[1]: (spec.shape, distributed.axes_for(rules, spec.path, len(spec.shape)))
            for spec in distributed.variable_specs(config)}


def test_a_single_kv_head_is_replicated_not_split():
    # keras-hub issue 1613: its layout map splits gemma_2b_en's one KV head and crashes.
    layouts = _split_axes("gemma_2b_en", 8)                          # 8 query heads, 1 KV head
    assert layouts["block_0/attention/query/kernel"][1] == (None, MODEL)
    assert layouts["block_0/attention/key/kernel"][1] == (None, None)
    assert layouts["block_0/attention/value/kernel"][1] == (None, None)
    assert layouts["block_0/attention/attention_output/kernel"][1] == (MODEL, None)
    layouts = _split_axes("gemma3_1b", 8)                            # 4 query heads: cannot split over 8
    assert layouts["block_0/attention/query/kernel"][1] == (None, None)
    assert layouts["block_0/mlp/gate/kernel"][1] == (None, MODEL)      # 6912 columns do split
    assert _split_axes("gemma3_1b", 4)["block_0/attention/query/kernel"][1] == (None, MODEL)
    layouts = _split_axes("recurrent_gemma_2b_en", 2)                # 10 heads / RG-LRU blocks over 2
    assert layouts["block_2/attention_block/proj_k/kernel"][1] == (None, None)
    assert layouts["block_2/attention_block/proj_q/kernel"][1] == (None, MODEL)
    assert layouts["block_0/recurrent_block/rg_lru/a_gate/w"][1] == (MODEL, None, None)
    layouts = _split_axes("recurrent_gemma_2b_en", 4)                # 10 blocks do not split over 4
    assert layouts["block_0/recurrent_block/rg_lru/a_gate/w"][1] == (None, None, None)
    assert layouts["block_0/recurrent_block/linear_x/kernel"][1] == (None, None)


@pytest.mark.parametrize("name", ["gemma_2b_en", "gemma_7b_en", "gemma2_9b_en", "gemma2_27b_en", "gemma3_270m",
                                  "gemma3_12b_text", "code_gemma_7b_en", "recurrent_gemma_2b_en",
                                  "recurrent_gemma_9b_en"])
def test_layouts_split_whole_units_and_every_rule_is_used(name):
    config = read_config(name)
    specs = distributed.variable_specs(config)
    for model in (2, 4, 8, 16):
        rules = distributed.layout_rules(config, model)
        used = set()
        for spec in specs:
            axes = distributed.axes_for(rules, spec.path, len(spec.shape))   # raises on two matching rules
            used.update(r.pattern for r in rules if re.fullmatch(r.pattern, spec.path))
            for size, axis in zip(spec.shape, axes):
                if axis == MODEL:
                    assert size % model == 0, (spec.path, spec.shape, model)
        assert used == {r.pattern for r in rules}, f"{name}: rules matching no variable"


def test_a_model_axis_that_splits_nothing_is_an_error():
    from gemma_kit import GemmaConfig
    odd = GemmaConfig(vocab_size=251, hidden_dim=30, num_layers=1, num_query_heads=3, num_kv_heads=1, head_dim=10,
                      intermediate_dim=45, name="odd")
    with pytest.raises(ValueError, match="a model axis of 4 devices can split nothing in odd"):
        distributed.layout_rules(odd, 4)
    assert all(rule.axes == (None,) * len(rule.axes) for rule in distributed.layout_rules(odd, 1))


# -- bytes per device -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gemma_7b_en", "gemma2_9b_en", "recurrent_gemma_2b_en"])
def test_memory_table_counts_every_parameter(name):
    config = read_config(name)
    table = distributed.device_memory(name, "1x8", dtype="bfloat16")
    whole = sum(w for w, _ in table.rows.values())
    assert whole == 2 * config.num_parameters()                      # the configs' own count, in bfloat16
    assert whole / 8 <= table.weights_per_device < whole / 2
    replicated = distributed.device_memory(name, "8x1", dtype="bfloat16")
    assert replicated.weights_per_device == whole                    # data parallel: a full copy each
    lora = distributed.device_memory(name, "2x4", dtype="float32", optimizer="adamw", lora_rank=4)
    adapters = lora.rows["LoRA adapters"][0]
    assert lora.optimizer_bytes[0] == 2 * adapters                   # AdamW: m and v for the adapters only


def test_memory_tables_for_the_lesson():
    text = distributed.memory_tables()
    print(text)
    tpu = distributed.device_memory("gemma_7b_en", "1x8", dtype="bfloat16", optimizer="adamw", lora_rank=4)
    t4 = distributed.device_memory("gemma2_9b_en", "1x2", dtype="bfloat16", optimizer="adamw", lora_rank=4)
    assert tpu.fits(16) and not distributed.device_memory("gemma_7b_en", "8x1", dtype="bfloat16").fits(16)
    assert t4.fits(15) and not distributed.device_memory("gemma2_9b_en", "2x1", dtype="bfloat16").fits(15)
    assert "gemma_7b_en on mesh 1x8" in text and "gemma2_9b_en on mesh 1x2" in text


# -- multi-host start ----------------------------------------------------------------------------------

def test_cluster_from_environment_variables():
    assert distributed.cluster_from_env({}) is None
    assert distributed.initialize({}) is None                        # one host: nothing to start
    assert distributed.cluster_from_env({"TPU_WORKER_HOSTNAMES": "localhost"}) is None   # a single TPU VM
    keras_env = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:2345",
                 "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"}
    cluster = distributed.cluster_from_env(keras_env)
    assert (cluster.coordinator_address, cluster.num_processes, cluster.process_id) == ("10.0.0.1:1234", 2, 1)
    jax_env = {"JAX_COORDINATOR_ADDRESS": "host0:8476", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "0"}
    assert distributed.cluster_from_env(jax_env).num_processes == 4
    tpu = distributed.cluster_from_env({"TPU_WORKER_HOSTNAMES": "t1,t2,t3,t4"})
    assert tpu.coordinator_address is None and tpu.source == "TPU_WORKER_HOSTNAMES"
    assert distributed.cluster_from_env({"SLURM_NTASKS": "2"}).source == "SLURM_NTASKS"
    with pytest.raises(ValueError, match="KERAS_DISTRIBUTION_PROCESS_ID missing"):
        distributed.cluster_from_env({k: v for k, v in keras_env.items() if "PROCESS_ID" not in k})
    with pytest.raises(ValueError, match="JAX_PROCESS_ID=4 must be between 0 and"):
        distributed.cluster_from_env({**jax_env, "JAX_PROCESS_ID": "4"})
    with pytest.raises(ValueError, match="lists 2 addresses but KERAS_DISTRIBUTION_NUM_PROCESSES=3"):
        distributed.cluster_from_env({**keras_env, "KERAS_DISTRIBUTION_NUM_PROCESSES": "3"})
    with pytest.raises(ValueError, match="must be an integer"):
        distributed.cluster_from_env({**jax_env, "JAX_NUM_PROCESSES": "four"})


# -- 8 simulated devices ----------------------------------------------------------------------------

def _tiny_checkpoint_and_data(folder):
    """A tiny random Gemma 3 as a GGUF file (with its tokenizer) and 16 prompt/response lines."""
    from conftest import randomize, tiny_gemma3_config
    from tiny_gguf import backbone_tensors, write_gguf

    from gemma_kit import GemmaBackbone
    config = tiny_gemma3_config()
    checkpoint = write_gguf(folder / "tiny.gguf", config, backbone_tensors(randomize(GemmaBackbone(config))))
    words = ["cat", "dog", "sun", "sky", "red", "big", "run", "hat"]
    with open(folder / "pairs.jsonl", "w") as f:
        for i in range(16):
            f.write(json.dumps({"prompt": f"say {words[i % 8]}", "response": words[(i * 3) % 8]}) + "\n")
    return checkpoint, folder / "pairs.jsonl"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{family: worker results, "script": its output}; the workers and the script run side by side."""
    folder = tmp_path_factory.mktemp("distributed")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", GEMMA_KIT_JAX_CACHE="0")
    env.pop("XLA_FLAGS", None)
    commands = {family: [str(ROOT / "tests" / "distributed_worker.py"), family, str(folder / f"{family}.json")]
                for family in FAMILIES}
    checkpoint, data = _tiny_checkpoint_and_data(folder)
    commands["script"] = [str(ROOT / "scripts" / "train_distributed.py"), "--simulate-devices", "8",
                          "--mesh", "2x4", "--model", checkpoint, "--data", str(data), "--lora-rank", "2",
                          "--steps", "3", "--batch-size", "8", "--sequence-length", "48", "--response-length", "8",
                          "--learning-rate", "1e-2", "--save-adapter", str(folder / "tiny.lora.safetensors"),
                          "--prompt", "say cat"]
    processes = {name: subprocess.Popen([sys.executable] + command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
                 for name, command in commands.items()}
    results = {}
    for name, process in processes.items():
        output, _ = process.communicate(timeout=900)
        assert process.returncode == 0, f"{name} failed:\n{output[-4000:]}"
        results[name] = output if name == "script" else json.loads((folder / f"{name}.json").read_text())
    results["adapter"] = folder / "tiny.lora.safetensors"
    return results


@pytest.mark.once
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mesh", MESHES)
def test_every_variable_has_the_layout_it_asked_for(runs, family, mesh):
    for task in ("full", "lora"):
        run = runs[family][task][mesh]
        for path, (real, asked) in run["layouts"].items():           # weights and optimizer slots
            assert real == asked, (task, path)
        for path, axes in run["rule_layouts"].items():
            assert run["layouts"][path][0] == (axes if mesh != "8x1" else [None] * len(axes)), path
    split = [p for p, (real, _) in runs[family]["full"][mesh]["layouts"].items() if MODEL in real]
    if mesh == "8x1":
        assert not split                                             # data parallel: full copies
    else:
        assert any("embeddings" in p for p in split) and any("kernel" in p for p in split)
        # 1 or 2 KV heads never split over 4 or 8 devices: replicated
        assert not any(p.endswith(("/key/kernel", "/value/kernel", "/proj_k/kernel", "/proj_v/kernel")) for p in split)


@pytest.mark.once
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mesh", MESHES)
def test_training_loss_matches_one_device(runs, family, mesh):
    for task in ("full", "lora"):
        single, sharded = runs[family][task]["single"]["losses"], runs[family][task][mesh]["losses"]
        difference = np.abs(np.array(sharded) - np.array(single)).max()
        print(f"{family} {task} {mesh}: losses {np.round(sharded, 5).tolist()}, max |diff| {difference:.2e}")
        assert difference < 1e-4
        assert single[-1] < single[0]                                # it trained


@pytest.mark.once
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mesh", ["1x8", "2x4"])             # model parallel (8x1 only copies the weights)
def test_greedy_generation_matches_one_device(runs, family, mesh):
    assert runs[family]["full"][mesh]["tokens"] == runs[family]["full"]["single"]["tokens"]


@pytest.mark.once
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mesh", MESHES)
def test_bytes_per_device_match_the_arrays(runs, family, mesh):
    for task in ("full", "lora"):
        memory = runs[family][task][mesh]["memory"]
        assert len(memory["measured_weights"]) == 8
        assert set(memory["measured_weights"].values()) == {memory["predicted_weights"]}
        assert set(memory["measured_optimizer"].values()) == {memory["predicted_optimizer"]}


@pytest.mark.once
def test_training_script_on_a_simulated_mesh(runs):
    output = runs["script"]
    assert "on mesh 2x4 (8 devices), float32, adamw LoRA rank 2" in output        # the memory table
    assert "on mesh 2x4 (8 cpu devices)" in output
    losses = json.loads(output.split("loss per epoch: ")[1].splitlines()[0])
    assert len(losses) == 1 and np.isfinite(losses[0])
    assert runs["adapter"].stat().st_size > 0


@pytest.mark.once
def test_training_script_rejects_a_mesh_that_does_not_fit():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_distributed.py"), "--simulate-devices",
                             "4", "--mesh", "3x3", "--data", "unused.jsonl"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "mesh 3x3 needs 9 devices but only 4 are available" in result.stderr
