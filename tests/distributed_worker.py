"""Runs in a subprocess for tests/test_distributed.py and tests/test_gemma4_distributed.py: one model
family on 8 simulated CPU devices. (tests/test_gemma4_memory.py imports it for its tiny Gemma 4 configs.)

    python tests/distributed_worker.py gemma1_mqa result.json

XLA_FLAGS must be set before JAX starts, so this cannot run inside the pytest process.
For each mesh (1x8, 2x4, 8x1) it builds the same tiny random model under the distribution,
and records: the layouts read back from the arrays and the ones asked for, the bytes each
device holds (measured and predicted), the loss of each training step (full fine-tuning
and LoRA) and, under model parallelism, the greedy tokens. The same runs on one device (no distribution) are the reference.
The weights after the first training step go to ``<result>.<task>.<mesh>.npz`` beside the result file.

The Gemma 4 families (``tests/test_gemma4_distributed.py``) run full fine-tuning only, with no
generation, on their own meshes (``PLANS``): 4x2 splits the 2 local KV heads but never the one
global KV head; 1x8 splits the PLE table's 56 packed columns.
"""

import os
import sys

if __name__ == "__main__":          # imported by a test for its configs: leave that process alone
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("GEMMA_KIT_JAX_CACHE", "0")

import json  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from gemma_kit import GemmaConfig, distributed  # noqa: E402
from gemma_kit.models import Gemma4Config, backbone_class  # noqa: E402
from gemma_kit.models.gemma4.config import gemma4_layer_types  # noqa: E402
from gemma_kit.models.gemma.config import gemma2_layer_types, gemma3_layer_types  # noqa: E402
from gemma_kit.generate import Generator  # noqa: E402
from gemma_kit.models.griffin.config import GriffinConfig, griffin_block_types  # noqa: E402
from gemma_kit.tuning import enable_lora  # noqa: E402

MESHES = ("1x8", "2x4", "8x1")
# family -> (tasks, meshes) where it differs from (("full", "lora"), MESHES)
PLANS = {"gemma4_moe": (("full",), ("2x4", "4x2")), "gemma4_e2b": (("full",), ("2x4", "1x8"))}
STEPS, BATCH, SEQ = 3, 8, 16


def configs():
    """Tiny models: Gemma 3 (GQA: 4 query / 2 KV heads), Gemma 1 (MQA: 8 query heads, 1 KV head),
    Gemma 2 (soft caps, 8 / 4 heads), RecurrentGemma (8 RG-LRU blocks, MQA local attention)."""
    return {
        "gemma3_gqa": GemmaConfig(vocab_size=256, hidden_dim=32, num_layers=2, num_query_heads=4, num_kv_heads=2,
                                  head_dim=8, intermediate_dim=64, layer_types=gemma3_layer_types(2),
                                  sliding_window=8, use_post_norms=True, use_qk_norm=True, name="tiny_gemma3"),
        "gemma1_mqa": GemmaConfig(vocab_size=256, hidden_dim=32, num_layers=2, num_query_heads=8, num_kv_heads=1,
                                  head_dim=4, intermediate_dim=64, name="tiny_gemma1"),
        "gemma2": GemmaConfig(vocab_size=256, hidden_dim=32, num_layers=2, num_query_heads=8, num_kv_heads=4,
                              head_dim=4, intermediate_dim=64, layer_types=gemma2_layer_types(2), sliding_window=8,
                              attn_soft_cap=50.0, final_soft_cap=30.0, use_post_norms=True, name="tiny_gemma2"),
        "griffin": GriffinConfig(vocab_size=256, width=32, mlp_expanded_width=64, num_heads=8,
                                 block_types=griffin_block_types(3), attention_window_size=8, name="tiny_griffin"),
        **gemma4_configs(),
    }


def gemma4_configs():
    """The numbers of ``tests/gemma4_tiny.py``'s ``moe`` (4 experts, top 2, keys = values, 2 local / 1
    global KV heads) and ``e2b`` (PLE, last 3 of 7 layers borrow keys/values, double-wide MLP) variants."""
    common = dict(vocab_size=320, hidden_dim=32, num_query_heads=4, head_dim=8, global_head_dim=16,
                  intermediate_dim=48, sliding_window=8, final_soft_cap=30.0, rope_fraction_global=0.25,
                  max_sequence_length=512)
    return {
        "gemma4_moe": Gemma4Config(num_layers=6, num_kv_heads=2, num_global_kv_heads=1, attention_k_eq_v=True,
                                   layer_types=gemma4_layer_types(6), num_experts=4, num_experts_per_token=2,
                                   expert_intermediate_dim=24, name="tiny_gemma4_moe", **common),
        "gemma4_e2b": Gemma4Config(num_layers=7, num_kv_heads=1, layer_types=("local",) * 3 + ("global",)
                                   + ("local",) * 2 + ("global",), num_kv_shared_layers=3, use_double_wide_mlp=True,
                                   per_layer_input_dim=8, per_layer_vocab_size=320, name="tiny_gemma4_e2b",
                                   **common),
    }


def fill(backbone, seed=0):
    """Random weights from NumPy (the same on every mesh); assigning keeps each variable's layout."""
    rng = np.random.default_rng(seed)
    gemma4 = isinstance(backbone.config, Gemma4Config)          # norms multiply by scale: draw them around 1
    for variable in backbone.weights:
        scale = 0.5 if "norm" in variable.path else 0.2
        centre = 1.0 if gemma4 and ("norm" in variable.path or variable.path.endswith("scale")
                                    or variable.path.endswith("layer_scalar")) else 0.0
        variable.assign(rng.normal(centre, scale, variable.shape).astype("float32"))


def training_data(vocab):
    rng = np.random.default_rng(1)
    token_ids = rng.integers(1, vocab, ((STEPS + 1) * BATCH, SEQ + 1)).astype("int32")
    padding_mask = np.ones(((STEPS + 1) * BATCH, SEQ), bool)
    padding_mask[::3, -4:] = False                                    # some right padding
    return ({"token_ids": token_ids[:, :-1], "padding_mask": padding_mask}, token_ids[:, 1:],
            padding_mask.astype("float32"))


def train(backbone, lora):
    """``STEPS`` AdamW steps (batch 8; Gemma 4: one step), then one more batch: its loss is the loss
    after those steps.

    Returns the loss of every batch, each computed before that batch's update, and the weights
    after the first update.
    """
    gemma4 = isinstance(backbone.config, Gemma4Config)
    if lora:
        enable_lora(backbone, rank=2, targets=("query", "value"), verbose=False)
        rng = np.random.default_rng(2)
        for variable in backbone.trainable_weights:                   # A random, B random (not zero) too
            variable.assign(rng.normal(0.0, 0.3, variable.shape).astype("float32"))
    # Gemma 4 compares the trained weights too: Adam's step g / (|g| + epsilon) is about +-lr wherever
    # |g| >> epsilon, so with Keras' 1e-7 a gradient that is 1e-7 here and -1e-7 on a mesh (float
    # rounding of a sum split over devices) moves its weight by 2 * lr. epsilon 1e-3 keeps the step
    # proportional to such tiny gradients; the other families compare losses only.
    epsilon = 1e-3 if gemma4 else 1e-7
    backbone.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-2, epsilon=epsilon),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y, w = training_data(backbone.config.vocab_size)
    losses = []
    for step in range((1 if gemma4 else STEPS) + 1):
        rows = slice(step * BATCH, (step + 1) * BATCH)
        logs = backbone.train_on_batch({k: v[rows] for k, v in x.items()}, y[rows], sample_weight=w[rows],
                                       return_dict=True)
        losses.append(float(logs["loss"]))
        if step == 0:
            first_step = trained_weights(backbone)
    return losses, first_step


def trained(backbone, lora):
    """``train``'s results, plus how far the first step moved the weights (max |change|)."""
    before = trained_weights(backbone)
    losses, after = train(backbone, lora)
    moved = max(float(np.abs(after[path] - value).max()) for path, value in before.items())
    return {"losses": losses, "moved": moved, "weights": after}


def generate(backbone):
    prompts = [[5, 17, 33, 2, 9], [7, 7, 100], [1, 2, 3, 4, 5, 6, 7, 8], [200, 3]]   # batch 4: splits over 1, 2
    steps = list(Generator(backbone).tokens(prompts, max_new_tokens=6))
    return np.stack(steps, axis=1).tolist()


def run(config, mesh=None, lora=False):
    """One scenario; ``mesh=None`` is the single-device reference."""
    cls = backbone_class(config)
    generating = not lora and not isinstance(config, Gemma4Config)
    if mesh is None:
        backbone = cls(config, random_init=False)                 # zeros: fill() draws every weight
        fill(backbone)
        out = {"tokens": generate(backbone) if generating else None}
        return {**out, **trained(backbone, lora)}
    dist = distributed.make_distribution(config, mesh)
    backbone = distributed.build_backbone(config, dist, random_init=False)
    fill(backbone)
    model_parallel = distributed.parse_mesh(mesh)[1] > 1          # 8x1 holds full copies: nothing to compare
    out = {"tokens": generate(backbone) if model_parallel and generating else None}
    with dist.scope():                                # LoRA adapters and optimizer slots get their layouts here
        out.update(trained(backbone, lora))
    weights = out.pop("weights")
    variables = backbone.weights + [v for v in backbone.optimizer.variables if len(v.shape)]
    out["layouts"] = {v.path: [list(distributed.read_layout(v)), list(distributed.expected_layout(dist, v))]
                      for v in variables}
    data, model = distributed.parse_mesh(mesh)
    rules = distributed.layout_rules(config, model)
    out["rule_layouts"] = {v.path: list(distributed.axes_for(rules, v.path, len(v.shape))) for v in backbone.weights}
    predicted = distributed.device_memory(config, mesh, dtype="float32", optimizer="adamw",
                                          lora_rank=2 if lora else None)
    out["memory"] = {"measured_weights": distributed.measured_bytes_per_device(backbone.weights),
                     "measured_optimizer": distributed.measured_bytes_per_device(variables[len(backbone.weights):]),
                     "predicted_weights": predicted.weights_per_device,
                     "predicted_optimizer": predicted.optimizer_bytes[1]}
    return {**out, "weights": weights}


def trained_weights(backbone):
    """{path with "/" as "|" (an npz key): the whole array, gathered from its shards}."""
    return {v.path.replace("/", "|"): keras.ops.convert_to_numpy(v.value) for v in backbone.weights}


def main(family, path):
    started = time.perf_counter()
    config = configs()[family]
    assert len(keras.distribution.list_devices()) == 8, keras.distribution.list_devices()
    tasks, meshes = PLANS.get(family, (("full", "lora"), MESHES))
    results = {}
    for key in tasks:
        results[key] = {}
        for mesh in (None,) + meshes:
            result = run(config, mesh, lora=key == "lora")
            np.savez(f"{path}.{key}.{mesh or 'single'}.npz", **result.pop("weights"))
            results[key][mesh or "single"] = result
            print(f"{time.perf_counter() - started:6.1f} s", family, key, mesh or "single", result["losses"],
                  flush=True)
    with open(path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
