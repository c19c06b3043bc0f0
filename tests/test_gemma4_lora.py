"""LoRA on Gemma 4 (tiny random ``moe`` and ``e2b`` models from ``gemma4_tiny.py``, written by transformers).

- targets: attention (a KV-borrowing layer has only query and attention_output), the dense MLP, the
  per-layer-input gate/projection (E2B) and the routed experts (26B-A4B), whose LoRA is one
  ``A_e @ B_e`` per expert on the 3-D ``gate``/``up``/``down`` weights; parameter counts by hand;
- B = 0 at the start: the output is the base model's, bit for bit;
- ``fit`` changes the LoRA matrices only (the experts' included) and lowers the loss;
- merging gives the tuned logits at the base's cost and unfreezes only what LoRA froze
  (``layer_scalar`` stays frozen); removing gives the base back; the adapter file and a ``.keras``
  file round-trip;
- ``export_peft`` + transformers + ``peft.PeftModel`` reproduce our logits, experts included
  (PEFT's ``target_parameters``);
- an int8 base (QLoRA-style): Dense layers and embeddings int8, the experts stay float32.
"""

import keras
import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit import tuning
from gemma_kit.models.gemma4.moe import MixtureOfExperts
from gemma4_tiny import VOCAB, save_hf

ALL = ("attention", "mlp", "per_layer_input", "experts")
IDS = np.random.default_rng(0).integers(4, VOCAB, (2, 16)).astype("int32")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{variant: a transformers folder with a tiny tokenizer}."""
    out = {}
    for seed, variant in enumerate(("moe", "e2b")):
        out[variant] = str(tmp_path_factory.mktemp(variant))
        save_hf(out[variant], variant, seed=seed)
    return out


def logits(model, ids=IDS):
    return np.asarray(ops.convert_to_numpy(tuning.lora.backbone_of(model)(ids)))


def randomize_lora(model, seed=1, scale=0.2):
    rng = np.random.default_rng(seed)
    for layer in tuning.lora_layers(model):
        for variable in tuning.lora_variables(layer):
            variable.assign(rng.normal(0, scale, variable.shape).astype("float32"))


def adapted(model):
    """{block index: sorted names of its adapted layers}."""
    out = {}
    for layer in tuning.lora_layers(model):
        block = int(layer.path.split("/")[1].split("_")[1])                 # "<model>/block_3/attention/query"
        out.setdefault(block, []).append(layer.name)
    return {block: sorted(names) for block, names in out.items()}


# -- choosing layers -----------------------------------------------------------------------------
def test_targets_reach_every_projection_and_the_experts(folders):
    moe = gemma_kit.load(folders["moe"])
    c = moe.config
    counts = tuning.enable_lora(moe, rank=2, targets=ALL, verbose=False)
    state = tuning.lora_state(moe)
    assert state["targets"] == ["attention_output", "down", "experts", "gate", "key", "query", "up", "value"]
    assert {v.path.rsplit("/", 1)[1] for v in moe.backbone.trainable_weights} == {
        "lora_kernel_a", "lora_kernel_b"} | {f"{w}_lora_kernel_{s}" for w in ("gate", "up", "down") for s in "ab"}
    experts = moe.backbone.blocks[0].experts                             # 4 experts, hidden 32, expert_dim 24
    shapes = [tuple(v.shape) for v in tuning.lora_variables(experts)]
    assert shapes == [(4, 32, 2), (4, 2, 24), (4, 32, 2), (4, 2, 24), (4, 24, 2), (4, 2, 32)]   # gate, up, down
    assert not experts.gate.trainable and not experts.router.kernel.trainable
    # Hand count, rank 2: A (in, r) + B (r, out) per Dense; per expert the same on each of gate, up, down.
    expected = 0
    for i in range(c.num_layers):
        q_width, kv_width = c.num_query_heads * c.head_dim_of(i), c.kv_heads_of(i) * c.head_dim_of(i)
        attention = (c.hidden_dim + q_width) * 2 + (q_width + c.hidden_dim) * 2 + (c.hidden_dim + kv_width) * 2
        if not c.keys_are_values(i):
            attention += (c.hidden_dim + kv_width) * 2                      # a value projection of its own
        mlp = 3 * (c.hidden_dim + c.mlp_dim_of(i)) * 2
        routed = 3 * c.num_experts * (c.hidden_dim + c.expert_intermediate_dim) * 2
        expected += attention + mlp + routed
    assert counts["trainable"] == expected
    assert counts["total"] == c.num_parameters() + expected                # router_scale etc. counted too
    assert adapted(moe)[5] == ["attention_output", "down", "experts", "gate", "key", "query", "up"]   # k = v

    e2b = gemma_kit.load(folders["e2b"])
    with pytest.raises(ValueError, match=r"match no Dense layer \(nor experts\)"):
        tuning.enable_lora(e2b, targets=("experts",))                    # E2B has no experts; nothing changed
    tuning.enable_lora(e2b, rank=2, targets=("attention", "per_layer_input"), verbose=False)
    blocks = adapted(e2b)
    lender = ["attention_output", "key", "per_layer_gate", "per_layer_projection", "query", "value"]
    borrower = ["attention_output", "per_layer_gate", "per_layer_projection", "query"]   # no key/value layers
    assert [blocks[i] for i in range(7)] == [lender] * 4 + [borrower] * 3


# -- training --------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["moe", "e2b"])
def test_training_starts_at_the_base_changes_only_lora_and_lowers_the_loss(folders, variant):
    keras.utils.set_random_seed(0)
    model = gemma_kit.load(folders[variant])
    base = logits(model)
    tuning.enable_lora(model, rank=2, targets=ALL, verbose=False)
    np.testing.assert_array_equal(logits(model), base)                    # B = 0: exactly the base model
    frozen = {v.path: ops.convert_to_numpy(v).copy() for v in model.backbone.weights if "lora" not in v.path}
    x = {"token_ids": IDS[:, :-1], "padding_mask": np.ones_like(IDS[:, :-1])}
    # TensorFlow would spend ~30 s of CPU tracing the forward and backward graphs; four eager steps take a few.
    trainer = tuning.compile_for_training(model.backbone, 2e-2, run_eagerly=keras.backend.backend() == "tensorflow")
    losses = trainer.fit(x, IDS[:, 1:], batch_size=2, epochs=4, verbose=0).history["loss"]
    assert losses[-1] < 0.9 * losses[0], losses
    for variable in model.backbone.weights:
        if "lora" not in variable.path:
            np.testing.assert_array_equal(ops.convert_to_numpy(variable), frozen[variable.path])
    for layer in tuning.lora_layers(model):                               # every B has learned (experts' too)
        assert all(np.any(ops.convert_to_numpy(v)) for v in tuning.lora_variables(layer)[1::2]), layer.path


# -- the update: merge, remove, files ----------------------------------------------------------------
def test_expert_update_merge_remove_and_files(folders, tmp_path):
    model = gemma_kit.load(folders["moe"])
    base = logits(model)
    tuning.enable_lora(model, rank=3, targets=("query", "experts"), alpha=6.0, verbose=False)
    randomize_lora(model)
    experts = model.backbone.blocks[2].experts
    w, a, b = (ops.convert_to_numpy(v) for v in (experts.up, experts.up_lora_kernel_a, experts.up_lora_kernel_b))
    np.testing.assert_allclose(ops.convert_to_numpy(experts.expert_weight("up")),
                               w + (6.0 / 3) * np.einsum("eir,ero->eio", a, b), atol=1e-5)   # per expert
    tuned = logits(model)
    assert np.abs(tuned - base).max() > 1e-2
    np.testing.assert_allclose(model.logits(IDS), tuned, atol=1e-4)       # the compiled forward sees LoRA too

    path = tuning.save_adapter(model, tmp_path / "moe.lora.safetensors")
    assert tuning.read_adapter_metadata(path)["targets"] == ["experts", "query"]
    fresh = gemma_kit.load(folders["moe"])
    tuning.load_adapter(fresh, path)
    np.testing.assert_allclose(logits(fresh), tuned, atol=1e-5)

    model.backbone.save(tmp_path / "tuned.keras")                         # experts saved merged, as Dense is
    np.testing.assert_allclose(logits(keras.saving.load_model(tmp_path / "tuned.keras")), tuned, atol=1e-4)

    assert tuning.merge_lora(model) == 6 + 6                              # query and experts in 6 blocks
    assert tuning.lora_state(model) is None and not any("lora" in v.path for v in model.backbone.weights)
    np.testing.assert_allclose(logits(model), tuned, atol=1e-4)
    still_frozen = {v.path.rsplit("/", 1)[1] for v in model.backbone.non_trainable_weights}
    assert still_frozen == {"layer_scalar"}                               # what the model itself keeps frozen

    assert tuning.remove_lora(fresh) == 12
    np.testing.assert_array_equal(logits(fresh), base)


# -- PEFT ------------------------------------------------------------------------------------------
# Once (JAX pass): the export is NumPy on the variables, and every backend's forward pass is checked
# against transformers in test_gemma4.py.
@pytest.mark.once
@pytest.mark.parametrize("variant", ["moe", "e2b"])
def test_peft_export_reproduces_our_logits(folders, variant, tmp_path):
    import json
    import warnings

    import peft
    import torch
    import transformers

    model = gemma_kit.load(folders[variant])
    tuning.enable_lora(model, rank=2, targets=ALL, alpha=4.0, verbose=False)
    randomize_lora(model)
    ours = logits(model)
    adapter = tuning.export_peft(model, tmp_path / "adapter")
    config = json.load(open(tmp_path / "adapter" / "adapter_config.json"))
    if variant == "moe":
        assert config["target_parameters"] == ["experts.gate_up_proj", "experts.down_proj"]
        assert (config["rank_pattern"], config["alpha_pattern"]) == ({"gate_up_proj": 4}, {"gate_up_proj": 8.0})
    else:
        assert {"per_layer_input_gate", "per_layer_projection"} <= set(config["target_modules"])
    hf = transformers.AutoModelForCausalLM.from_pretrained(folders[variant], dtype=torch.float32,
                                                           attn_implementation="eager")
    with torch.no_grad():
        base_theirs = hf(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*_pattern keys did not match")   # see peft_export.py
        tuned = peft.PeftModel.from_pretrained(hf, adapter).eval()
    with torch.no_grad():
        theirs = tuned(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    assert np.abs(theirs - base_theirs).max() > 1e-1                     # the adapter does something
    np.testing.assert_allclose(theirs, ours, atol=1e-4)


# -- QLoRA-style int8 base ---------------------------------------------------------------------------
def test_int8_base_quantizes_dense_layers_and_embeddings_and_keeps_experts_float(folders):
    model = gemma_kit.load(folders["moe"])
    f32 = logits(model)
    f32_bytes = tuning.weight_bytes(model)
    assert tuning.quantize_base(model) == 6 * 8 - 1 + 1                  # 8 Dense a block (block 5: k = v), embedding
    experts = [layer for layer in tuning.lora.sublayers(model.backbone) if isinstance(layer, MixtureOfExperts)]
    assert all(str(layer.gate.dtype) == "float32" and str(layer.router._kernel.dtype) == "int8" for layer in experts)
    expert_bytes = sum(4 * int(np.prod(getattr(layer, w).shape)) for layer in experts for w in ("gate", "up", "down"))
    assert tuning.weight_bytes(model) - expert_bytes < 0.4 * (f32_bytes - expert_bytes)   # the rest: ~1/4
    quantized = logits(model)
    assert np.abs(quantized - f32).mean() < 0.15 * np.abs(f32).mean()    # close to the float model (6% here)
    tuning.enable_lora(model, rank=2, targets=("query", "experts"), verbose=False)
    np.testing.assert_array_equal(logits(model), quantized)
    randomize_lora(model)
    assert np.abs(logits(model) - quantized).max() > 1e-2                # LoRA on an int8 router-and-all base

    e2b = gemma_kit.load(folders["e2b"])
    tuning.quantize_base(e2b)                                             # the PLE table is an Embedding too
    assert str(e2b.backbone.per_layer_embedding.token_table._embeddings.dtype) == "int8"
