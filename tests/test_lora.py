"""LoRA with Keras' own ``enable_lora``, on tiny random Gemma 3 and RecurrentGemma models.

- choosing layers by name and group, parameter counts, errors;
- the update is ``x @ W + (alpha / r) x A B``: merging it into W gives the same logits, removing it
  gives the base model back;
- response-only data and loss: ``ResponseLM`` equals the backbone's logits at the response positions,
  and the loss Keras reports equals cross-entropy averaged over response tokens computed by hand;
- training with ``fit`` changes the LoRA matrices only; AdamW skips norm scales and biases;
  gradient accumulation updates every k batches;
- an interrupted run resumed from its checkpoint ends with the uninterrupted run's losses and weights;
- int8-quantized base (QLoRA-style): trains, saves and loads, and its weights take less memory.
"""

import keras
import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit import tuning
from gemma_kit.models.griffin import GriffinBackbone, GriffinConfig
from conftest import randomize, tiny_gemma3_config
from tiny_gguf import tiny_tokenizer

VOCAB = 320



def examples(n=24, seed=0):
    """A toy task: the response is the prompt's words reversed."""
    rng = np.random.default_rng(seed)
    words = ["cat", "dog", "sun", "sky", "red", "big", "hat", "run"]
    out = []
    for _ in range(n):
        chosen = list(rng.choice(words, size=int(rng.integers(1, 4))))
        out.append({"prompt": "rev " + " ".join(chosen), "response": " ".join(reversed(chosen))})
    return out


def tiny_model(seed=0):
    backbone = randomize(gemma_kit.GemmaBackbone(tiny_gemma3_config()), seed=seed, scale=0.2)
    return gemma_kit.GemmaModel(backbone, tiny_tokenizer(add_space_prefix=False), backbone.config)


def randomize_lora(model, seed=1, scale=0.1):
    rng = np.random.default_rng(seed)
    for layer in tuning.lora_layers(model):
        for variable in (layer.lora_kernel_a, layer.lora_kernel_b):
            variable.assign(rng.normal(0, scale, variable.shape).astype("float32"))


def logits(backbone, ids):
    return np.asarray(ops.convert_to_numpy(backbone(ids)))


IDS = np.arange(5, 45, dtype="int32").reshape(2, 20) % VOCAB


# -- choosing layers -----------------------------------------------------------------------------
def test_targets_counts_and_errors(capsys):
    model = tiny_model()
    c = model.config
    counts = tuning.enable_lora(model, rank=2, targets=("query", "mlp"))
    assert "trainable" in capsys.readouterr().out
    per_layer = 2 * (c.hidden_dim + c.num_query_heads * c.head_dim)           # query: A (in, r) + B (r, out)
    per_layer += 2 * 2 * (c.hidden_dim + c.intermediate_dim) + 2 * (c.intermediate_dim + c.hidden_dim)   # gate, up, down
    assert counts["trainable"] == c.num_layers * per_layer
    assert {v.path.rsplit("/", 1)[1] for v in model.backbone.trainable_weights} == {"lora_kernel_a", "lora_kernel_b"}
    assert counts["total"] == c.num_parameters() + counts["trainable"]
    assert tuning.lora_state(model)["targets"] == ["down", "gate", "query", "up"]
    with pytest.raises(ValueError, match="already enabled"):
        tuning.enable_lora(model, rank=2)
    with pytest.raises(ValueError, match="Unknown LoRA target 'qkv'"):
        tuning.enable_lora(tiny_model(), targets=("qkv",))
    with pytest.raises(ValueError, match="match no Dense layer"):
        tuning.enable_lora(tiny_model(), targets=("recurrent",))


def tiny_griffin():
    config = GriffinConfig(vocab_size=VOCAB, width=32, mlp_expanded_width=48, num_heads=4, lru_width=40,
                           block_types=("recurrent", "recurrent", "attention"), attention_window_size=8)
    return randomize(GriffinBackbone(config), scale=0.2)


def test_griffin_targets_and_training():
    backbone = tiny_griffin()
    tuning.enable_lora(backbone, rank=2, targets=("query", "value", "recurrent"), verbose=False)
    names = sorted({layer.name for layer in tuning.lora_layers(backbone)})
    assert names == ["linear_out", "linear_x", "linear_y", "proj_q", "proj_v"]
    data = tuning.format_examples(tiny_tokenizer(add_space_prefix=False), examples(8), 48, 12)
    trainer = tuning.compile_for_training(tuning.ResponseLM(backbone), 1e-2)
    before = trainer.evaluate(data["x"], data["y"], sample_weight=data["sample_weight"], verbose=0)[0]
    trainer.fit(data["x"], data["y"], sample_weight=data["sample_weight"], batch_size=8, epochs=3, verbose=0)
    after = trainer.evaluate(data["x"], data["y"], sample_weight=data["sample_weight"], verbose=0)[0]
    assert after < before


# -- the update itself: merge and remove ---------------------------------------------------------
def test_merge_and_remove():
    model = tiny_model()
    base = logits(model.backbone, IDS)
    tuning.enable_lora(model, rank=4, targets=("attention",), alpha=8.0, verbose=False)
    assert np.array_equal(logits(model.backbone, IDS), base)                  # B = 0: starts at the base
    randomize_lora(model)
    layer = tuning.lora_layers(model)[0]
    x = np.random.default_rng(0).normal(size=(3, layer._kernel.shape[0])).astype("float32")
    w, a, b = (ops.convert_to_numpy(v) for v in (layer._kernel, layer.lora_kernel_a, layer.lora_kernel_b))
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), x @ w + (8.0 / 4) * (x @ a) @ b, atol=1e-5)
    tuned = logits(model.backbone, IDS)
    assert np.abs(tuned - base).max() > 1e-2
    np.testing.assert_allclose(model.logits(IDS), tuned, atol=1e-5)           # the compiled forward sees LoRA
    assert tuning.merge_lora(model) == 2 * 6 * 2
    assert tuning.lora_state(model) is None and len(model.backbone.trainable_weights) == len(model.backbone.weights)
    np.testing.assert_allclose(logits(model.backbone, IDS), tuned, atol=1e-4)

    other = tiny_model()
    tuning.enable_lora(other, rank=2, verbose=False)
    randomize_lora(other)
    assert tuning.remove_lora(other) == 2 * 6
    assert not any("lora" in v.path for v in other.backbone.weights)
    np.testing.assert_array_equal(logits(other.backbone, IDS), base)


# -- data and the response-only loss -------------------------------------------------------------
def test_format_examples_masks_prompt_and_padding():
    tokenizer = tiny_tokenizer(add_space_prefix=False)
    example = {"prompt": "rev cat dog", "response": "dog cat"}
    data = tuning.format_examples(tokenizer, [example], 40)
    prompt = [tokenizer.bos_id] + tokenizer.encode(tokenizer.apply_chat_template([{"role": "user",
                                                                                    "content": example["prompt"]}]))
    response = tokenizer.encode("dog cat") + [tokenizer.token_to_id("<end_of_turn>")]
    full = prompt + response
    n = len(full) - 1
    np.testing.assert_array_equal(data["x"]["token_ids"][0, :n], full[:-1])
    np.testing.assert_array_equal(data["y"][0, :n], full[1:])
    assert data["x"]["padding_mask"][0].sum() == n and not data["x"]["padding_mask"][0, n:].any()
    weights = data["sample_weight"][0]
    assert weights.sum() == len(response) and weights[len(prompt) - 1:n].all()
    gathered = tuning.format_examples(tokenizer, [example], 40, response_length=len(response) + 2)
    np.testing.assert_array_equal(gathered["y"][0, :len(response)], response)
    np.testing.assert_array_equal(gathered["sample_weight"][0], [1] * len(response) + [0, 0])
    with pytest.raises(ValueError, match="example 0 has .* more than sequence_length=10"):
        tuning.format_examples(tokenizer, [example], 10)
    with pytest.raises(ValueError, match="response has .* more than response_length=2"):
        tuning.format_examples(tokenizer, [example], 40, response_length=2)
    with pytest.raises(ValueError, match="example 1: expected a dict with string fields"):
        tuning.format_examples(tokenizer, [example, {"prompt": "x"}], 40)


def test_response_only_loss_matches_a_hand_computation():
    model = tiny_model()
    data = tuning.format_examples(model.tokenizer, examples(6), 40, 12)
    full = tuning.format_examples(model.tokenizer, examples(6), 40)
    trainer = tuning.compile_for_training(tuning.ResponseLM(model.backbone))
    picked = np.asarray(ops.convert_to_numpy(trainer(data["x"])))                          # (6, 12, vocab)
    every = logits(model.backbone, full["x"])                                              # (6, 40, vocab)
    positions = data["x"]["target_positions"]
    np.testing.assert_allclose(picked, np.take_along_axis(every, positions[:, :, None], 1), atol=1e-5)
    log_probs = every - np.log(np.exp(every - every.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - every.max(-1, keepdims=True)
    nll = -np.take_along_axis(log_probs, full["y"][:, :, None], 2)[..., 0]
    expected = (nll * full["sample_weight"]).sum() / full["sample_weight"].sum()
    loss = trainer.evaluate(data["x"], data["y"], sample_weight=data["sample_weight"], batch_size=6, verbose=0)[0]
    np.testing.assert_allclose(loss, expected, rtol=1e-4)
    tuning.compile_for_training(model.backbone)                                            # the plain backbone path
    loss = model.backbone.evaluate(full["x"], full["y"], sample_weight=full["sample_weight"], batch_size=6,
                                   verbose=0)[0]
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


# -- training ------------------------------------------------------------------------------------
def test_fit_trains_lora_only_and_weight_decay_skips_norms():
    model = tiny_model()
    tuning.enable_lora(model, rank=4, targets=("query", "value"), verbose=False)
    frozen = {v.path: ops.convert_to_numpy(v).copy() for v in model.backbone.weights if "lora" not in v.path}
    data = tuning.format_examples(model.tokenizer, examples(16), 40, 12)
    trainer = tuning.compile_for_training(tuning.ResponseLM(model.backbone), 1e-2, weight_decay=0.1)
    history = trainer.fit(data["x"], data["y"], sample_weight=data["sample_weight"], batch_size=8, epochs=4,
                          verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for v in model.backbone.weights:
        if "lora" not in v.path:
            np.testing.assert_array_equal(ops.convert_to_numpy(v), frozen[v.path])
    optimizer = trainer.optimizer
    by_path = {v.path.split("/", 1)[1]: v for v in model.backbone.weights}
    assert not optimizer._use_weight_decay(by_path["block_0/pre_attention_norm/scale"] if
                                           "block_0/pre_attention_norm/scale" in by_path else
                                           next(v for p, v in by_path.items() if p.endswith("scale")))
    assert optimizer._use_weight_decay(by_path["block_0/attention/query/lora_kernel_a"])
    assert not optimizer._use_weight_decay(next(v for v in tiny_griffin().weights if v.path.endswith("/bias")))


def test_gradient_accumulation_updates_every_k_batches():
    model = tiny_model()
    tuning.enable_lora(model, rank=2, verbose=False)
    data = tuning.format_examples(model.tokenizer, examples(8), 40, 12)
    trainer = tuning.compile_for_training(tuning.ResponseLM(model.backbone), 1e-2, gradient_accumulation_steps=2)
    b = tuning.lora_layers(model)[0].lora_kernel_b
    batches = tuning.TrainingBatches(data, 4, 1)
    trainer.fit(batches, epochs=1, callbacks=[batches.epoch_callback], verbose=0)
    assert not np.any(ops.convert_to_numpy(b))                 # one batch accumulated, no update yet
    trainer.fit(batches, initial_epoch=1, epochs=2, callbacks=[batches.epoch_callback], verbose=0)
    assert np.any(ops.convert_to_numpy(b))                     # the second batch completes an update


class Interrupt(keras.callbacks.Callback):
    def __init__(self, after):
        super().__init__()
        self.after, self.seen = after, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt("simulated interruption")


class Losses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.per_epoch = {}

    def on_epoch_end(self, epoch, logs=None):
        self.per_epoch[epoch] = logs["loss"]


def _run(tmp_path, name, interrupt_after=None):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    tuning.enable_lora(model, rank=2, verbose=False)
    data = tuning.format_examples(model.tokenizer, examples(24), 40, 12)
    trainer = tuning.compile_for_training(tuning.ResponseLM(model.backbone), 5e-3)
    batches = tuning.TrainingBatches(data, 4, steps_per_epoch=3, seed=1)       # a checkpoint every 3 steps
    losses = Losses()
    checkpoint = tuning.TrainingCheckpoint(tmp_path / name)
    callbacks = [batches.epoch_callback, checkpoint, losses]
    if interrupt_after:
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(batches, epochs=4, shuffle=False, callbacks=callbacks + [Interrupt(interrupt_after)],
                        verbose=0)
        keras.utils.set_random_seed(0)
        model = tiny_model()                                      # a fresh process would start like this
        tuning.enable_lora(model, rank=2, verbose=False)
        trainer = tuning.compile_for_training(tuning.ResponseLM(model.backbone), 5e-3)
        trainer.fit(batches, epochs=4, shuffle=False, callbacks=callbacks, verbose=0)
        assert checkpoint.resumed_from == 2
    else:
        trainer.fit(batches, epochs=4, shuffle=False, callbacks=callbacks, verbose=0)
    return losses.per_epoch, {v.path: ops.convert_to_numpy(v) for v in trainer.trainable_weights}


def test_resume_after_interruption_gives_the_same_run(tmp_path):
    straight, straight_weights = _run(tmp_path, "straight")
    resumed, resumed_weights = _run(tmp_path, "resumed", interrupt_after=7)   # dies in epoch 3 (steps 7..9)
    assert sorted(resumed) == [0, 1, 2, 3]
    np.testing.assert_allclose([resumed[e] for e in range(4)], [straight[e] for e in range(4)], rtol=1e-5)
    for path, value in straight_weights.items():
        np.testing.assert_allclose(resumed_weights[path], value, atol=1e-6)


# -- QLoRA-style: LoRA on an int8 base ------------------------------------------------------------
def test_int8_base_trains_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    f32_bytes = tuning.weight_bytes(model)
    assert tuning.quantize_base(model) == 6 * 7 + 1                       # 7 Dense per block, the embedding
    assert tuning.weight_bytes(model) < 0.4 * f32_bytes
    tuning.enable_lora(model, rank=4, targets=("query",), verbose=False)
    with pytest.raises(ValueError, match="before enable_lora"):
        tuning.quantize_base(model)
    assert str(tuning.lora_layers(model)[0]._kernel.dtype) == "int8"
    data = tuning.format_examples(model.tokenizer, examples(16), 40, 12)
    trainer = tuning.compile_for_training(tuning.ResponseLM(model.backbone), 1e-2)
    losses = trainer.fit(data["x"], data["y"], sample_weight=data["sample_weight"], batch_size=16, epochs=6,
                         verbose=0).history["loss"]
    assert losses[-1] < 0.99 * losses[0]
    path = tuning.save_adapter(model, tmp_path / "q.lora.safetensors")
    other = tiny_model()
    tuning.quantize_base(other)
    tuning.load_adapter(other, path)
    np.testing.assert_allclose(logits(other.backbone, IDS), logits(model.backbone, IDS), atol=1e-5)
