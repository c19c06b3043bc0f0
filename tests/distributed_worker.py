"""Runs in a subprocess for tests/test_distributed.py: one model family on 8 simulated CPU devices.

    python tests/distributed_worker.py gemma1_mqa result.json

XLA_FLAGS must be set before JAX starts, so this cannot run inside the pytest process.
For each mesh (1x8, 2x4, 8x1) it builds the same tiny random model under the distribution,
and records: the layouts read back from the arrays and the ones asked for, the bytes each
device holds (measured and predicted), the loss of each training step (full fine-tuning
and LoRA) and, under model parallelism, the greedy tokens. The same runs on one device (no distribution) are the reference.
"""

import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("GEMMA_KIT_JAX_CACHE", "0")

import json  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from gemma_kit import GemmaBackbone, GemmaConfig, GriffinBackbone, distributed  # noqa: E402
from gemma_kit.models.gemma.config import gemma2_layer_types, gemma3_layer_types  # noqa: E402
from gemma_kit.generate import Generator  # noqa: E402
from gemma_kit.models.griffin.config import GriffinConfig, griffin_block_types  # noqa: E402
from gemma_kit.tuning import enable_lora  # noqa: E402

MESHES = ("1x8", "2x4", "8x1")
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
    }


def fill(backbone, seed=0):
    """Random weights from NumPy (the same on every mesh); assigning keeps each variable's layout."""
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        scale = 0.5 if "norm" in variable.path else 0.2
        variable.assign(rng.normal(0.0, scale, variable.shape).astype("float32"))


def training_data(vocab):
    rng = np.random.default_rng(1)
    token_ids = rng.integers(1, vocab, ((STEPS + 1) * BATCH, SEQ + 1)).astype("int32")
    padding_mask = np.ones(((STEPS + 1) * BATCH, SEQ), bool)
    padding_mask[::3, -4:] = False                                    # some right padding
    return ({"token_ids": token_ids[:, :-1], "padding_mask": padding_mask}, token_ids[:, 1:],
            padding_mask.astype("float32"))


def train(backbone, lora):
    """``STEPS`` AdamW steps (batch 8), then one more batch: its loss is the loss after ``STEPS`` steps.

    Returns the loss of every batch, each computed before that batch's update.
    """
    if lora:
        enable_lora(backbone, rank=2, targets=("query", "value"), verbose=False)
        rng = np.random.default_rng(2)
        for variable in backbone.trainable_weights:                   # A random, B random (not zero) too
            variable.assign(rng.normal(0.0, 0.3, variable.shape).astype("float32"))
    backbone.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-2),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y, w = training_data(backbone.config.vocab_size)
    losses = []
    for step in range(STEPS + 1):
        rows = slice(step * BATCH, (step + 1) * BATCH)
        logs = backbone.train_on_batch({k: v[rows] for k, v in x.items()}, y[rows], sample_weight=w[rows],
                                       return_dict=True)
        losses.append(float(logs["loss"]))
    return losses


def generate(backbone):
    prompts = [[5, 17, 33, 2, 9], [7, 7, 100], [1, 2, 3, 4, 5, 6, 7, 8], [200, 3]]   # batch 4: splits over 1, 2
    steps = list(Generator(backbone).tokens(prompts, max_new_tokens=6))
    return np.stack(steps, axis=1).tolist()


def run(config, mesh=None, lora=False):
    """One scenario; ``mesh=None`` is the single-device reference."""
    cls = GemmaBackbone if isinstance(config, GemmaConfig) else GriffinBackbone
    if mesh is None:
        backbone = cls(config)
        fill(backbone)
        out = {"tokens": generate(backbone) if not lora else None}
        out["losses"] = train(backbone, lora)
        return out
    dist = distributed.make_distribution(config, mesh)
    backbone = distributed.build_backbone(config, dist)
    fill(backbone)
    model_parallel = distributed.parse_mesh(mesh)[1] > 1          # 8x1 holds full copies: nothing to compare
    out = {"tokens": generate(backbone) if model_parallel and not lora else None}
    with dist.scope():                                # LoRA adapters and optimizer slots get their layouts here
        out["losses"] = train(backbone, lora)
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
    return out


def main(family, path):
    started = time.perf_counter()
    config = configs()[family]
    assert len(keras.distribution.list_devices()) == 8, keras.distribution.list_devices()
    results = {}
    for lora in (False, True):
        key = "lora" if lora else "full"
        results[key] = {"single": run(config, None, lora)}
        for mesh in MESHES:
            results[key][mesh] = run(config, mesh, lora)
            print(f"{time.perf_counter() - started:6.1f} s", family, key, mesh, results[key][mesh]["losses"],
                  flush=True)
    with open(path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
