"""Gemma 4 keras-hub presets both ways, against keras-hub's own forward pass and against transformers.

For each tiny variant of ``gemma4_tiny.py`` (``e2b``: per-layer embeddings, KV sharing, double-wide
MLP; ``moe``: experts, keys = values, one global KV head; ``dense``: keys = values), keras-hub's
``Gemma4Backbone`` is built with the same architecture (text only), every weight random (norms and
layer scalars too), saved with ``save_to_preset`` and loaded with ``gemma_kit.load``:
- the config equals what the transformers loader reads for the same variant;
- logits within 1e-4 of keras-hub's on 30 tokens (the window is 8), and the same greedy tokens;
- a transformers model -> ours -> ``save_preset`` -> keras-hub's ``Gemma4CausalLM.from_preset``: keras-hub,
  transformers and we give the same logits;
- a multimodal preset (a vision encoder): the text decoder loads, the encoder is left alone;
- configs one side cannot express are refused, naming the field.

keras-hub 0.29.1 computes what transformers 5.24 computes on every feature here (PLE, KV sharing, double-wide
MLP, experts, keys = values, proportional RoPE, window, soft cap): logits within 3e-5. They differ in reading
configs: keras-hub turns keys = values on whenever ``num_global_key_value_heads`` is set (transformers: only
with ``attention_k_eq_v``; the E2B/E4B checkpoints ship null, so none is misread), derives ``layer_types``
without forcing the last layer global, and its transformers converter reads ``global_head_dim`` and
``num_global_key_value_heads``, which transformers 5.24 no longer writes (``per_layer_config`` instead): a
folder transformers 5.24 saved does not load in keras-hub (last test), so we go through ``save_preset``.
"""

import json
import shutil

import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma4_tiny import VOCAB, hf_config, hf_logits, save_hf
from gemma_kit.export.keras_hub import copy_weights_to_keras_hub, keras_hub_backbone
from gemma_kit.export.keras_hub_gemma4 import keras_hub_variables
from gemma_kit.loaders.hf_gemma4 import gemma4_config_from_hf
from gemma_kit.loaders.keras_hub import KerasHubFormatError
from gemma_kit.loaders.keras_hub_gemma4 import keras_hub_shape, to_theirs
from gemma_kit.models.gemma4 import Gemma4Backbone
from tiny_gguf import tiny_tokenizer

# gemma4_tiny.py's variants in keras-hub's words.
COMMON = dict(vocabulary_size=VOCAB, image_size=None, hidden_dim=32, intermediate_dim=48, num_query_heads=4,
              head_dim=8, global_head_dim=16, sliding_window_size=8, final_logit_soft_cap=30.0,
              global_rope_partial_rotary_factor=0.25)
VARIANTS = {
    "e2b": dict(num_layers=7, num_key_value_heads=1, hidden_size_per_layer_input=8, vocab_size_per_layer_input=VOCAB,
                num_kv_shared_layers=3, use_double_wide_mlp=True,
                layer_types=["sliding_attention"] * 3 + ["full_attention"] + ["sliding_attention"] * 2
                + ["full_attention"]),
    "moe": dict(num_layers=6, num_key_value_heads=2, num_global_key_value_heads=1, enable_moe_block=True,
                num_experts=4, num_experts_per_token=2, expert_intermediate_dim=24,
                layer_types=["sliding_attention"] * 5 + ["full_attention"]),
    "dense": dict(num_layers=6, num_key_value_heads=2, num_global_key_value_heads=1),   # pattern 6: 5 local, 1 global
}
IDS = np.concatenate([[2], np.random.default_rng(0).integers(4, VOCAB, 29)]).astype("int32")[None]   # (1, 30)


def randomize(backbone, seed):
    """Random weights as ``gemma4_tiny.build_hf`` draws them: norms and scales 1 + N(0, 0.2), layer scalars
    U(0.5, 1.5), everything else N(0, 0.15)."""
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        if variable.path.endswith("layer_scalar"):
            value = rng.uniform(0.5, 1.5, variable.shape)
        elif "norm" in variable.path or "scale" in variable.path:
            value = 1.0 + rng.normal(0.0, 0.2, variable.shape)
        else:
            value = rng.normal(0.0, 0.15, variable.shape)
        variable.assign(np.asarray(value, "float32"))
    return backbone


def save_tokenizer(folder):
    proto = tiny_tokenizer().model_proto.SerializeToString()
    tokenizer = keras_hub.models.Gemma4Tokenizer(proto=proto, has_vision_tokens=False, has_video_tokens=False)
    tokenizer.save_to_preset(folder)


# Each forward pass runs compiled on JAX (its op-by-op first run is slower) and eagerly elsewhere (tracing
# a graph costs more than running a tiny model).
JAX = keras.config.backend() == "jax"


def keras_hub_logits(backbone, ids):
    """keras-hub's backbone and its tied, soft-capped output layer: float32 (batch, seq, vocab)."""
    positions = np.broadcast_to(np.arange(ids.shape[1], dtype="int32"), ids.shape)
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids), "position_ids": positions}
    hidden = ops.convert_to_tensor(backbone.predict_on_batch(inputs)) if JAX else backbone(inputs)
    return ops.convert_to_numpy(backbone.token_embedding(hidden, reverse=True))


def our_logits(model, ids):
    """Ours, (batch, seq, vocab): ``model.logits`` is the compiled forward pass."""
    return model.logits(ids) if JAX else np.asarray(ops.convert_to_numpy(model.backbone(ids)))


@pytest.fixture(scope="module", params=list(VARIANTS))
def preset(request, tmp_path_factory):
    """(variant, folder, keras-hub backbone, gemma_kit model) for one tiny random keras-hub preset."""
    name = request.param
    backbone = randomize(keras_hub.models.Gemma4Backbone(**COMMON, **VARIANTS[name]), seed=list(VARIANTS).index(name))
    folder = str(tmp_path_factory.mktemp(name))
    backbone.save_to_preset(folder)
    save_tokenizer(folder)
    return name, folder, backbone, gemma_kit.load(folder)


def test_config_is_what_transformers_says_for_the_same_model(preset):
    name, folder, _, model = preset
    assert isinstance(model.backbone, Gemma4Backbone)
    from_hf = gemma4_config_from_hf(hf_config(name).to_dict(), "config.json")
    # Neither the name nor the context length is in keras-hub's config.json, and transformers names a PLE
    # vocabulary even for a model without PLE; every other field must agree.
    unnamed = dict(name="x", per_layer_vocab_size=model.config.per_layer_vocab_size)
    assert model.config.replace(max_sequence_length=512, **unnamed) == from_hf.replace(**unnamed)
    assert gemma_kit.read_config(folder) == model.config


def test_logits_match_keras_hub(preset):
    name, _, backbone, model = preset
    error = np.abs(our_logits(model, IDS) - keras_hub_logits(backbone, IDS)).max()     # 30 tokens, window 8
    print(f"\n{name} ({keras.config.backend()}): max |logits - keras-hub| = {error:.2e}")
    assert error < 1e-4


# Compiling our generation loop is the slow part on TensorFlow: e2b (the cache with borrowed keys and
# values) on every backend, the other two in the JAX pass.
@pytest.mark.parametrize("preset", ["e2b", pytest.param("moe", marks=pytest.mark.once),
                                    pytest.param("dense", marks=pytest.mark.once)], indirect=True)
def test_greedy_tokens_match_keras_hub(preset):
    """Our cached greedy decoding, then one keras-hub forward pass over prompt + our tokens: keras-hub's
    argmax after every prefix is the token we chose, so greedy decoding in keras-hub writes the same tokens."""
    name, _, backbone, model = preset
    prompt = IDS[0, :12].tolist()
    ours = model.generate_ids([prompt], 18, stop_tokens=[])[0]                # 30 tokens: wraps the window
    theirs = keras_hub_logits(backbone, np.array([prompt + ours], "int32"))
    assert theirs[0, len(prompt) - 1:-1].argmax(-1).tolist() == ours


def test_export_puts_every_weight_where_keras_hub_keeps_it(preset):
    """Our config and weights copied into a fresh keras-hub backbone (what save_preset writes) equal, tensor for
    tensor, the keras-hub backbone the preset came from."""
    _, _, original, model = preset
    copy = keras_hub_backbone(model.config)
    copy_weights_to_keras_hub(model.backbone, copy)
    assert copy.get_config() == {**original.get_config(), "name": copy.name,        # keras-hub's defaults written out
                                 "local_rope_wavelength": 10_000.0, "global_rope_wavelength": 1_000_000.0}
    for ours, theirs in zip(copy.weights, original.weights, strict=True):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(ops.convert_to_numpy(ours), ops.convert_to_numpy(theirs), err_msg=ours.path)


@pytest.mark.parametrize("variant", ["e2b", pytest.param("moe", marks=pytest.mark.once)])
def test_save_preset_loads_in_keras_hub_and_agrees_with_transformers(variant, tmp_path):
    """transformers' weights -> ours -> save_preset -> keras-hub: all three give the same logits
    (e2b, PLE and borrowed keys and values, on every backend; the experts in the JAX pass)."""
    hf = save_hf(tmp_path / "hf", variant, seed=7)
    model = gemma_kit.load(str(tmp_path / "hf"))
    folder = model.save_preset(tmp_path / "keras_hub")
    causal_lm = keras_hub.models.Gemma4CausalLM.from_preset(folder)
    theirs, reference = keras_hub_logits(causal_lm.backbone, IDS), hf_logits(hf, IDS[0])
    ours = our_logits(model, IDS)
    errors = np.abs(ours - theirs).max(), np.abs(theirs - reference).max()
    print(f"\n{variant} ({keras.config.backend()}): save_preset -> keras-hub max |logits - ours| {errors[0]:.2e}, "
          f"keras-hub vs transformers {errors[1]:.2e}")
    assert max(errors) < 1e-4
    assert np.asarray(causal_lm.preprocessor.tokenizer("hello world")).tolist() == model.tokenizer.encode("hello world")
    np.testing.assert_array_equal(our_logits(gemma_kit.load(folder), IDS), ours)


@pytest.mark.once
def test_text_decoder_of_a_multimodal_preset(tmp_path):
    """Real presets carry a vision encoder (and an audio one in E2B/E4B): we read the text decoder, tensor for
    tensor what keras-hub holds, and leave the encoder alone. (An audio encoder adds layers of its own classes
    only, so the names we read do not change; building one costs the JAX pass 7 s more.)"""
    vision = keras_hub.models.Gemma4VisionEncoder(image_size=28, patch_size=14, num_heads=2, hidden_dim=16,
                                                  num_layers=1, intermediate_dim=32, head_dim=8, output_dim=32,
                                                  pool_size=2, position_embedding_size=16)
    kwargs = dict(COMMON, **VARIANTS["e2b"], image_size=28)
    multimodal = randomize(keras_hub.models.Gemma4Backbone(vision_encoder=vision, **kwargs), seed=3)
    multimodal.save_to_preset(str(tmp_path))
    save_tokenizer(str(tmp_path))
    model = gemma_kit.load(str(tmp_path))
    theirs = keras_hub_variables(model.config, multimodal)
    for path, variable in model.backbone.weights_by_path().items():
        shape = keras_hub_shape(path, model.config, variable.shape)
        ours = to_theirs(path, ops.convert_to_numpy(variable), shape)
        np.testing.assert_array_equal(ours, ops.convert_to_numpy(theirs[path]), err_msg=path)
    assert len(theirs) == len(model.backbone.weights) < len(multimodal.weights)     # the encoder stayed behind


# -- what one side cannot express ------------------------------------------------------------------
@pytest.fixture
def edited(tmp_path, preset):
    """``edit(drop=(), **changes)``: a copy of the preset folder, its config.json's fields changed or dropped."""
    def edit(drop=(), **changes):
        folder = tmp_path / "preset"
        shutil.copytree(preset[1], folder, dirs_exist_ok=True)
        saved = json.loads((folder / "config.json").read_text())
        saved["config"].update(changes)
        for field in drop:
            del saved["config"][field]
        (folder / "config.json").write_text(json.dumps(saved))
        return str(folder)
    return edit


@pytest.mark.parametrize("preset", ["dense"], indirect=True)
@pytest.mark.parametrize("changes, message", [
    (dict(use_bidirectional_attention=True), "use_bidirectional_attention=True"),
    (dict(is_embedding_model=True), "is_embedding_model=True"),
    (dict(use_sliding_window_attention=False), "use_sliding_window_attention=False"),
    (dict(local_rope_scaling_factor=8.0), "local_rope_scaling_factor=8.0"),
    (dict(layer_types=None, sliding_window_pattern=4), "sliding_window_pattern make the last layer 'sliding_att"),
    (dict(num_kv_shared_layers=6), "num_kv_shared_layers=6 .a shared layer has no earlier layer of its type"),
    (dict(drop=["head_dim"]), "'config.head_dim' is missing"),
])
def test_a_config_we_cannot_express_is_refused(edited, changes, message):
    with pytest.raises(KerasHubFormatError, match=f"config.json.*{message}"):
        gemma_kit.read_config(edited(**changes))


@pytest.mark.parametrize("preset", ["dense"], indirect=True)
def test_layer_types_from_sliding_window_pattern(preset, edited):
    """keras-hub writes layer_types out; without them its rule is: the last of every ``pattern`` layers is global."""
    derived = gemma_kit.read_config(edited(layer_types=None, sliding_window_pattern=6))
    assert derived == preset[3].config.replace(name=derived.name)
    assert gemma_kit.read_config(edited(layer_types=None, sliding_window_pattern=3)).layer_types == (
        "local", "local", "global") * 2


@pytest.mark.parametrize("preset", ["dense"], indirect=True)
def test_fields_for_images_and_training_are_left(preset, edited):
    """26B A4B and 31B presets let image tokens see each other; dropout only trains: neither touches text inference."""
    config = gemma_kit.read_config(edited(use_vision_bidirectional_attention=True, dropout=0.1, image_size=896))
    assert config == preset[3].config.replace(name=config.name)


@pytest.mark.parametrize("preset", ["dense"], indirect=True)
def test_a_tensor_of_the_wrong_shape_is_named(edited):
    with pytest.raises(KerasHubFormatError, match=r"'layers/gemma4_text_decoder_block_5/attention/key_dense/vars/0' "
                                                  r"has shape \(1, 32, 16\), but config.json implies \(2, 32, 16\)"):
        gemma_kit.load(edited(num_global_key_value_heads=2))


@pytest.mark.parametrize("preset", ["moe"], indirect=True)
@pytest.mark.parametrize("changes, message", [
    (dict(query_pre_attn_scalar=256.0), "query_pre_attn_scalar=256.0"),
    (dict(use_qk_norm=False), "use_qk_norm=False"),
    (dict(attention_k_eq_v=False), "num_global_kv_heads=1 without attention_k_eq_v"),
])
def test_save_preset_refuses_what_keras_hub_cannot_express(preset, changes, message):
    with pytest.raises(ValueError, match=f"keras-hub cannot represent this config: {message}"):
        keras_hub_backbone(preset[3].config.replace(**changes))


@pytest.mark.once
def test_keras_hub_cannot_read_a_folder_transformers_5_saved(tmp_path):
    """keras-hub's converter takes the global layers' head size from ``global_head_dim``, absent from what
    transformers 5.24 writes: it builds them with ``head_dim`` and fails on the first global query kernel."""
    save_hf(tmp_path, "dense")
    assert "global_head_dim" not in json.loads((tmp_path / "config.json").read_text())
    with pytest.raises(ValueError, match=r"cannot reshape array of size 2048 into shape \(4,8,32\)"):
        keras_hub.models.Gemma4Backbone.from_preset(str(tmp_path))
