"""memory_plan: hand-checked numbers for real presets, and the estimate against a real training step.

The measurement runs one ``model.fit`` step (AdamW, sparse cross-entropy on the logits) of a
small Gemma in a fresh interpreter on the current backend, and reads the process's peak
resident memory (``VmHWM`` in ``/proc/self/status``). The baseline is the same
interpreter, idle, with keras, the backend and gemma_kit imported and one op run; the
difference must be within 25% of the plan's training total.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import gemma_kit
from gemma_kit.models.gemma.config import GemmaConfig, gemma2_layer_types, gemma3_layer_types
from gemma_kit.memory import DEVICES, GB, MemoryPlan, lora_parameters, memory_plan

# -- hand-checked numbers for real presets -----------------------------------------------------


def test_2b_inference_weights_in_bfloat16_are_5_gb():
    plan = memory_plan("gemma_2b_en", dtype="bfloat16", optimizer=None)
    assert plan.weights_bytes == 2_506_172_416 * 2
    assert abs(plan.weights_bytes / GB - 5.0) < 0.05
    assert plan.total_bytes == plan.weights_bytes + plan.kv_cache_bytes
    assert (plan.gradients_bytes, plan.optimizer_bytes, plan.activations_bytes) == (0, 0, 0)
    assert plan.fits["Colab T4"]


def test_7b_full_adamw_fine_tuning_does_not_fit_a_t4():
    plan = memory_plan("gemma_7b_en", dtype="float32", optimizer="adamw")
    # weights 4 + gradients 4 + AdamW m and v 8 bytes per parameter: 137 GB before activations.
    assert plan.weights_bytes + plan.gradients_bytes + plan.optimizer_bytes == 8_537_680_896 * 16
    assert not plan.fits["Colab T4"] and not plan.fits["Kaggle 2xT4"] and not plan.fits["Kaggle TPU v3-8"]


def test_2b_lora_fits_a_t4_but_full_fine_tuning_does_not():
    """The Keras LoRA tutorial: gemma_2b_en, rank 4, 512-token sequences, on a free Colab T4."""
    lora = memory_plan("gemma_2b_en", dtype="bfloat16", lora_rank=4, sequence_length=512, backend="jax")
    full = memory_plan("gemma_2b_en", dtype="bfloat16", sequence_length=512, backend="jax")
    assert lora.trainable_parameters == 18 * 4 * ((2048 + 8 * 256) + (2048 + 256))    # query + value
    assert lora.optimizer_bytes == 2 * 4 * lora.trainable_parameters
    assert lora.fits["Colab T4"] and not full.fits["Colab T4"]


def test_lora_targets_and_rank():
    config = gemma_kit.read_config("gemma3_1b")
    d, qd, kvd = 1152, 4 * 256, 1 * 256
    assert lora_parameters(config, 8) == 26 * 8 * ((d + qd) + (d + kvd))
    assert lora_parameters(config, 8, ("query", "key", "value", "attention_output")) == \
        26 * 8 * ((d + qd) + 2 * (d + kvd) + (qd + d))
    with pytest.raises(ValueError, match="lora_targets"):
        lora_parameters(config, 8, ("gate",))


def test_kv_cache_counts_the_window_on_local_layers():
    config = gemma_kit.read_config("gemma3_1b")            # 26 layers: 22 local (window 512), 4 global
    plan = memory_plan(config, dtype="bfloat16", optimizer=None, sequence_length=32_768, batch_size=2)
    slots = 22 * 512 + 4 * 32_768
    assert plan.kv_cache_bytes == 2 * 2 * 1 * 256 * 2 * slots           # keys and values, batch 2, bf16
    short = memory_plan(config, optimizer=None, sequence_length=100)  # shorter than the window
    assert short.kv_cache_bytes == 2 * 1 * 1 * 256 * 4 * 26 * 100


def test_fits_on_devices_and_budget():
    plan = memory_plan("gemma2_9b_en", dtype="bfloat16", optimizer=None, budget_gb=20)
    total = plan.total_bytes / GB                                       # about 18.6 GB
    assert 15 < total < 20
    assert plan.fits == {"Colab T4": False, "Kaggle 2xT4": True, "Kaggle TPU v3-8": True, "budget": True}
    assert not memory_plan("gemma2_9b_en", dtype="bfloat16", optimizer=None, budget_gb=18).fits["budget"]
    assert "budget" not in memory_plan("gemma2_9b_en", optimizer=None).fits
    assert DEVICES["Kaggle TPU v3-8"] == (8, 16)


def test_mixed_precision_keeps_float32_weights():
    mixed = memory_plan("gemma3_270m", dtype="mixed_bfloat16", backend="jax")
    full = memory_plan("gemma3_270m", dtype="float32", backend="jax")
    assert mixed.weights_bytes == full.weights_bytes and mixed.activations_bytes < full.activations_bytes


def test_the_plan_says_to_load_float16_on_a_t4():
    """A T4 has float16 tensor cores and none for bfloat16; a float16 model keeps its residual stream
    in float32 (``nn/precision.py``), which the training activations count at 4 bytes a value."""
    for dtype in ("float32", "bfloat16", "float16"):
        plan = memory_plan("gemma3_270m", dtype=dtype, optimizer=None)
        assert plan.t4_dtype == "float16" and plan.to_dict()["t4_dtype"] == "float16"
        line = str(plan).splitlines()[-1]
        assert line.split()[:5] == ["dtype", "on", "a", "T4", "float16"], line
        assert "<td>dtype on a T4</td><td style='text-align:right'>float16" in plan._repr_html_()
    half, brain = memory_plan("gemma3_270m", dtype="float16"), memory_plan("gemma3_270m", dtype="bfloat16")
    assert (half.weights_bytes, half.kv_cache_bytes) == (brain.weights_bytes, brain.kv_cache_bytes)
    c = real_config()                                    # 1 x 1024 tokens; 18 layers of 640, 4 norms each
    assert half.activations_bytes - brain.activations_bytes == 1024 * 2 * c.num_layers * (6 + 2 * 4) * 640


def test_table_text_and_html():
    plan = memory_plan("gemma_2b_en", dtype="bfloat16", lora_rank=4, budget_gb=12)
    text, html = str(plan), plan._repr_html_()
    for label in ("weights", "gradients", "optimizer state", "activations", "total", "Colab T4 (15 GB)",
                  "Kaggle TPU v3-8 (128 GB)", "budget (12 GB)", "LoRA rank 4"):
        assert label in text and label in html
    assert html.startswith("<table>")
    assert json.dumps(plan.to_dict())
    assert "KV cache" in str(memory_plan("gemma_2b_en", optimizer=None))


@pytest.mark.parametrize("kwargs, message", [
    (dict(optimizer="adagrad"), "optimizer='adagrad' is not supported"),
    (dict(dtype="float64"), "dtype='float64' is not supported"),
    (dict(dtype="int3"), "dtype='int3' is not supported"),
    (dict(backend="numpy"), "backend='numpy'"),
    (dict(batch_size=0), "batch_size"),
    (dict(sequence_length=10_000), "max_sequence_length=8192"),
    (dict(lora_rank=0), "lora_rank"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        memory_plan("gemma_2b_en", **kwargs)


def _int8_counts(backbone):
    """(int8 values, float32 values that are not int8 scales) the quantized ``backbone`` stores."""
    int8 = sum(int(np.prod(w.shape)) for w in backbone.weights if w.dtype == "int8")
    left_float = sum(int(np.prod(w.shape)) for w in backbone.weights
                     if w.dtype == "float32" and not w.path.endswith(("kernel_scale", "embeddings_scale")))
    return int8, left_float


def test_int8_weights_are_the_bytes_the_quantized_model_stores():
    """One byte a weight plus a float32 scale per block of 32 (every Gemma's widths are multiples
    of 32); the plan counts the few float32 weights int8 leaves (norms) as int8 too."""
    from conftest import tiny_gemma3_config
    from gemma_kit.nn.int8 import quantize_backbone

    config = tiny_gemma3_config()
    backbone = gemma_kit.GemmaBackbone(config, random_init=False)
    quantize_backbone(backbone)
    int8, left_float = _int8_counts(backbone)
    stored = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in backbone.weights)
    plan = memory_plan(config, optimizer=None, quantize="int8", sequence_length=16)
    assert plan.weights_bytes == round((int8 + left_float) * 1.125)
    assert plan.weights_bytes == stored - round(left_float * (4 - 1.125))        # widths of 32, 64: no padding
    assert plan.kv_cache_bytes == memory_plan(config, optimizer=None, sequence_length=16).kv_cache_bytes
    assert "int8 weights, float32 activations" in str(plan)
    real = memory_plan("gemma3_270m", optimizer=None, quantize="int8")       # measured: 0.30 GB of weights
    assert abs(real.weights_bytes / GB - 0.30) < 0.01
    qlora = memory_plan("gemma3_270m", quantize="int8", lora_rank=4)           # float32 adapters, trained
    assert qlora.weights_bytes == real.weights_bytes + 4 * lora_parameters(real_config(), 4)
    assert qlora.gradients_bytes == 4 * lora_parameters(real_config(), 4)


def real_config():
    from gemma_kit.memory import _config_of
    return _config_of("gemma3_270m")


@pytest.mark.parametrize("kwargs, message", [
    (dict(quantize="int4"), "quantize='int4' is not supported"),
    (dict(quantize="int8", optimizer="adamw"), "int8 weights are frozen"),
])
def test_bad_quantize_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        memory_plan("gemma3_270m", **kwargs)


def test_unknown_preset_names_close_matches():
    with pytest.raises(ValueError, match="'gemma_2b_en'"):
        memory_plan("gemma_2b")


def test_a_checkpoint_path_works_too(gguf_path):
    assert memory_plan(gguf_path, optimizer=None).parameters == 268_098_176


def test_exported_from_the_package():
    assert gemma_kit.memory_plan is memory_plan and "memory_plan" in gemma_kit.__all__
    assert isinstance(memory_plan("gemma3_270m"), MemoryPlan)


# -- the estimate against a measured training step --------------------------------------------

MEASURE = r"""
import json, resource, sys
import numpy as np
import keras
import gemma_kit

def peak_bytes():
    # Linux: VmHWM, the peak resident memory of *this* program. (ru_maxrss would start at the
    # parent's RSS: Linux carries it across fork + exec, so a big pytest process would hide ours.)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss    # macOS: bytes

spec = json.loads(sys.argv[1])
keras.ops.add(keras.ops.ones((2,)), 1.0)                           # start the backend
idle = peak_bytes()
config = gemma_kit.GemmaConfig.from_dict(spec["config"])
model = gemma_kit.GemmaBackbone(config)
tokens = np.random.default_rng(0).integers(0, config.vocab_size, (spec["batch"], spec["seq"])).astype("int32")
model.compile(optimizer=keras.optimizers.AdamW(1e-4),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(tokens, tokens, batch_size=spec["batch"], epochs=1, verbose=0)
print(json.dumps({"measured": peak_bytes() - idle}))
"""

# Two mini Gemmas shaped like the real ones, big enough (0.8-1.3 GB) that the baseline
# (about 1 GB of imported libraries) and JAX's compiler (~0.15 GB) do not swamp them.
CONFIGS = {
    # Gemma 3: 5 local + 1 global, QK-norm, MQA, a big vocabulary: logits and activations dominate.
    "gemma3-like": dict(batch=2, seq=256, config=dict(
        vocab_size=65_536, hidden_dim=256, num_layers=6, num_query_heads=4, num_kv_heads=1, head_dim=64,
        intermediate_dim=1536, layer_types=gemma3_layer_types(6), sliding_window=128, use_post_norms=True,
        use_qk_norm=True, rope_base_global=1_000_000.0)),
    # Gemma 2: local/global, soft caps, GQA, one sequence: weights and AdamW state dominate.
    "gemma2-like": dict(batch=1, seq=256, config=dict(
        vocab_size=32_000, hidden_dim=512, num_layers=4, num_query_heads=8, num_kv_heads=4, head_dim=64,
        intermediate_dim=2048, layer_types=gemma2_layer_types(4), sliding_window=64, attn_soft_cap=50.0,
        final_soft_cap=30.0, use_post_norms=True)),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_estimate_is_within_25_percent_of_a_measured_training_step(name):
    spec = CONFIGS[name]
    config = GemmaConfig(**spec["config"])
    plan = memory_plan(config, batch_size=spec["batch"], sequence_length=spec["seq"], optimizer="adamw")
    result = subprocess.run([sys.executable, "-c", MEASURE, json.dumps({**spec, "config": config.to_dict()})],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": keras.backend.backend()})
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])["measured"]
    ratio = plan.total_bytes / measured
    print(f"{name} on {plan.backend}: plan {plan.total_bytes / 1e6:.0f} MB, measured {measured / 1e6:.0f} MB, "
          f"ratio {ratio:.2f}")
    assert 0.75 <= ratio <= 1.25, f"{name}: plan {plan}\nmeasured {measured / 1e6:.0f} MB"
