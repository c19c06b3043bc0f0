"""float16 models: the residual stream stays float32 (``gemma_kit/nn/precision.py``), so logits stay finite.

A T4 has no fast bfloat16, so Colab learners load ``dtype="float16"``, whose largest value is
65,504. The real Gemma 3 270M's residual stream reaches 103,795 (its BOS token). The tiny models
here get weights that push their float32 residual stream past 65,504 the same way (huge post-norm
scales; for Griffin, which has no post-norms, a huge MLP output bias in one channel), and
float16 must still give float32's logits, on every backend and every family the fix touches:
Gemma 3, Gemma 4 (mixture of experts; per-layer inputs with KV sharing) and Griffin.
"""

import keras
import numpy as np
import pytest
from keras import ops

import gemma_kit
from conftest import tiny_gemma3_config
from distributed_worker import gemma4_configs
from gemma_kit.compile import compile_model_function
from gemma_kit.generate import Generator
from gemma_kit.memory import memory_plan
from gemma_kit.models.griffin.config import GriffinConfig
from gemma_kit.nn import cache_bytes, precision
from gemma_kit.nn.precision import FLOAT16_MAX, residual_dtype

CONFIGS = {"gemma3": tiny_gemma3_config(), **gemma4_configs(),
           "griffin": GriffinConfig(vocab_size=320, width=32, mlp_expanded_width=64, num_heads=4, lru_width=48,
                                    attention_window_size=4, block_types=("recurrent", "recurrent", "attention") * 2,
                                    name="tiny_griffin")}
IDS = np.random.default_rng(1).integers(0, 320, (2, 12)).astype("int32")     # (batch, seq)


def loud(backbone, family):
    """Random weights (norms around their identity) whose residual stream passes float16's range."""
    rng = np.random.default_rng(0)
    gemma4 = family.startswith("gemma4")
    for variable in backbone.weights:
        path = variable.path
        identity = gemma4 and ("norm" in path or path.endswith(("scale", "layer_scalar")))   # Gemma 4: x * scale
        value = rng.normal(1.0 if identity else 0.0, 0.3, variable.shape)
        if family == "griffin" and path.endswith("mlp_block/down/bias"):
            value[5] = 20_000.0                                   # every block adds 20,000 to channel 5
        elif family != "griffin" and "/post_" in path and "per_layer" not in path:
            value = value * 8_000 if gemma4 else (1 + value) * 8_000 - 1     # post-norms scale by ~8,000
        variable.assign(value.astype(variable.dtype))
    return backbone


def forward(backbone):
    """float32 logits (batch, seq, vocab), the residual stream's largest |x|, and its dtype."""
    def run(token_ids):
        capture = {}
        hidden = backbone.hidden_states(token_ids, capture=capture)
        peak = ops.max(ops.stack([ops.max(ops.abs(ops.cast(x, "float32"))) for x in capture["hidden"]]))
        return backbone.logits_from_hidden(hidden), peak, capture["hidden"][0][0, 0, :1]
    if keras.backend.backend() == "jax":       # eager JAX compiles each op alone: one program is faster
        run = compile_model_function(backbone, run)
    logits, peak, sample = run(ops.convert_to_tensor(IDS))
    return (np.asarray(ops.convert_to_numpy(logits)), float(ops.convert_to_numpy(peak)),
            keras.backend.standardize_dtype(sample.dtype))


@pytest.fixture(scope="module")
def models():
    """{(family, dtype): backbone}, built on first use."""
    built = {}

    def get(family, dtype):
        if (family, dtype) not in built:
            config = CONFIGS[family]            # zeros first (fast), then loud()'s values
            built[family, dtype] = loud(gemma_kit.backbone_class(config)(config, dtype=dtype, random_init=False),
                                        family)
        return built[family, dtype]
    return get


@pytest.fixture(scope="module")
def runs(models):
    """{(family, dtype): forward(...)}, computed on first use."""
    done = {}

    def get(family, dtype):
        if (family, dtype) not in done:
            done[family, dtype] = forward(models(family, dtype))
        return done[family, dtype]
    return get


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_float16_logits_are_finite_and_equal_float32s(runs, family):
    logits32, peak32, _ = runs(family, "float32")
    logits16, peak16, stream16 = runs(family, "float16")
    assert peak32 > 1.25 * FLOAT16_MAX, f"{family}: the test needs a residual stream past 65,504, got {peak32:,.0f}"
    assert stream16 == "float32" and abs(peak16 - peak32) < 0.01 * peak32    # float32 in float16 models
    assert np.isfinite(logits16).all(), f"{family}: float16 logits are not finite"
    error = np.abs(logits16 - logits32).max()
    assert error < 0.02 * np.abs(logits32).max(), f"{family}: max |float16 - float32| = {error:.3g}"


def test_without_the_float32_stream_float16_overflows(monkeypatch):
    """The check above, on a model built with the residual stream left in float16: NaN logits."""
    monkeypatch.setattr(precision, "residual_dtype", lambda dtype=None: precision._policy(dtype).compute_dtype)
    monkeypatch.setattr(gemma_kit.nn.backbone, "residual_dtype", precision.residual_dtype)
    backbone = gemma_kit.GemmaBackbone(CONFIGS["gemma3"], dtype="float16", random_init=False)
    logits, _, stream = forward(loud(backbone, "gemma3"))
    assert stream == "float16" and not np.isfinite(logits).all()


def test_cached_greedy_tokens_equal_float32s(models):
    """Prefill and decode through the float16 KV cache, left padding included: float32's tokens."""
    prompts = [[2, 17, 33, 81, 9], [2, 100, 101]]
    tokens = {dtype: np.stack(list(Generator(models("gemma3", dtype)).tokens(prompts, 6)))
              for dtype in ("float32", "float16")}
    np.testing.assert_array_equal(tokens["float16"], tokens["float32"])


def test_float16_keeps_weights_and_cache_in_float16_and_the_plan_counts_them(models):
    assert [residual_dtype(d) for d in ("float32", "bfloat16", "mixed_bfloat16", "float16", "mixed_float16")] \
        == ["float32", "bfloat16", "bfloat16", "float32", "float32"]
    for family in ("gemma3", "gemma4_e2b"):
        backbone, config = models(family, "float16"), CONFIGS[family]
        float32 = {v.path for v in backbone.weights if v.dtype == "float32"}
        # Gemma 4's per-layer-input gate and projection read the float32 stream: float32 weights.
        assert all("/per_layer_gate/" in p or "/per_layer_projection/" in p for p in float32), sorted(float32)
        assert len(float32) == (2 * config.num_layers if getattr(config, "per_layer_input_dim", 0) else 0)
        caches = backbone.init_cache(2, 20)
        assert {keras.backend.standardize_dtype(c.dtype) for layer in caches for c in layer} == {"float16"}
        plan = memory_plan(config, dtype="float16", optimizer=None, batch_size=2, sequence_length=20)
        stored = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in backbone.weights)
        assert plan.weights_bytes + plan.ple_bytes == stored
        assert plan.kv_cache_bytes == cache_bytes(caches)
        assert plan.t4_dtype == "float16"


# -- the real Gemma 3 270M --------------------------------------------------------------------------

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,",
           "The three primary colors are"]
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def gemma_270m_float16():
    return gemma_kit.load("gemma3_270m", dtype="float16")


@pytest.mark.once
def test_real_270m_in_float16_generates_float32s_tokens(gemma_270m, gemma_270m_float16):
    """Greedy tokens through the float16 cache equal float32's; the logits of prompt + continuation
    (right-padded into one batch: causal, so padding after a row changes nothing before it) are finite
    and close. Measured: max |error| 0.04-0.06 on logits up to 32 (the residual stream peaks at 103,795)."""
    prompts = [gemma_270m.encode_prompt(p) for p in PROMPTS]
    tokens32 = np.stack(list(gemma_270m.generator.tokens(prompts, NEW_TOKENS)))            # (steps, batch)
    tokens16 = np.stack(list(gemma_270m_float16.generator.tokens(prompts, NEW_TOKENS)))
    sequences = [prompt + tokens32[:, row].tolist() for row, prompt in enumerate(prompts)]
    batch = np.zeros((len(sequences), max(map(len, sequences))), np.int32)
    for row, sequence in enumerate(sequences):
        batch[row, :len(sequence)] = sequence
    logits32, logits16 = gemma_270m.logits(batch), gemma_270m_float16.logits(batch)
    for row, (prompt, sequence) in enumerate(zip(PROMPTS, sequences)):
        error = np.abs(logits16[row, :len(sequence)] - logits32[row, :len(sequence)]).max()
        print(f"{prompt!r}: max |float16 - float32| logits {error:.4f}; "
              f"greedy tokens equal: {(tokens16[:, row] == tokens32[:, row]).all()}")
        assert np.isfinite(logits16[row, :len(sequence)]).all(), prompt
        assert error < 0.2, f"{prompt!r}: max |float16 - float32| = {error:.3g}"
    np.testing.assert_array_equal(tokens16, tokens32)
