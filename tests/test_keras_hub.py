"""keras-hub presets both ways, ``kaggle://`` handles, and the Keras-native ``.keras`` round trip.

Tiny random keras-hub models (every weight random, norm scales included) are saved with keras-hub's
own ``save_to_preset``, loaded with ``gemma_kit.load(folder)``, and compared with keras-hub's backbone
and its tied output layer on 40 tokens (longer than the 8-token sliding window):
- Gemma 1 with multi-query attention, Gemma 1 with multi-head attention (head_dim != hidden / heads);
- Gemma 2: sliding window, soft caps, post norms, ``query_head_dim_normalize=False``;
- Gemma 3 (text only): QK-norm, 5 local + 1 global layers, RoPE scaling on the global layer.
"""

import json
import os
import shutil

import h5py
import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

import gemma_kit
from conftest import randomize, tiny_gemma3_config
from gemma_kit.export.keras_hub import copy_weights_to_keras_hub, keras_hub_backbone
from gemma_kit.loaders import kaggle
from gemma_kit.loaders.keras_hub import KerasHubFormatError
from tiny_gguf import tiny_tokenizer

VOCAB = 320
VARIANTS = {
    "gemma1_mqa": ("GemmaBackbone", dict(num_layers=2, num_query_heads=4, num_key_value_heads=1, hidden_dim=32,
                                         intermediate_dim=128, head_dim=8)),
    "gemma1_mha": ("GemmaBackbone", dict(num_layers=2, num_query_heads=4, num_key_value_heads=4, hidden_dim=32,
                                         intermediate_dim=96, head_dim=12)),
    "gemma2": ("GemmaBackbone", dict(num_layers=4, num_query_heads=4, num_key_value_heads=2, hidden_dim=32,
                                     intermediate_dim=128, head_dim=16, query_head_dim_normalize=False,
                                     use_post_ffw_norm=True, use_post_attention_norm=True,
                                     attention_logit_soft_cap=5.0, final_logit_soft_cap=3.0,
                                     use_sliding_window_attention=True, sliding_window_size=8)),
    "gemma3": ("Gemma3Backbone", dict(image_size=896, num_layers=6, num_query_heads=4, num_key_value_heads=2,
                                      hidden_dim=32, intermediate_dim=64, head_dim=8, use_post_ffw_norm=True,
                                      use_post_attention_norm=True, use_sliding_window_attention=True,
                                      sliding_window_size=8, global_rope_scaling_factor=8.0)),
}
# Random weights with std 0.3 give logits of a few units. At std 0.5 the residual stream of a
# Gemma 1 model without post norms grows so much that float32 rounding alone reaches 2e-4 in the logits.
SCALE = 0.3
IDS = np.concatenate([[2], np.random.default_rng(0).integers(4, VOCAB, 39)]).astype("int32")[None]   # (1, 40)



def keras_hub_tokenizer(class_name, tokenizer):
    proto = tokenizer.model_proto.SerializeToString()
    if class_name == "Gemma3Backbone":
        return keras_hub.models.Gemma3Tokenizer(proto=proto, has_vision_tokens=False)
    return keras_hub.models.GemmaTokenizer(proto=proto)


def keras_hub_logits(backbone, ids):
    """keras-hub's backbone followed by its tied output layer: float32 (batch, seq, vocab)."""
    hidden = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    return ops.convert_to_numpy(backbone.token_embedding(hidden, reverse=True))


@pytest.fixture(scope="module", params=list(VARIANTS))
def preset(request, tmp_path_factory):
    """(variant, folder, keras-hub backbone, gemma_kit model) for one tiny random preset."""
    name = request.param
    class_name, kwargs = VARIANTS[name]
    backbone = randomize(getattr(keras_hub.models, class_name)(vocabulary_size=VOCAB, **kwargs), seed=1, scale=SCALE)
    folder = str(tmp_path_factory.mktemp(name))
    backbone.save_to_preset(folder)
    keras_hub_tokenizer(class_name, tiny_tokenizer()).save_to_preset(folder)
    if name == "gemma2":   # keras-hub ignores query_head_dim_normalize=False (see the test below): fix its oracle
        for block in backbone.transformer_layers:
            block.attention.query_head_dim_normalize = False
    return name, folder, backbone, gemma_kit.load(folder)


def test_config_is_read_from_config_json(preset):
    name, _, backbone, model = preset
    c = model.config
    assert (c.vocab_size, c.hidden_dim, c.num_layers, c.num_query_heads, c.num_kv_heads, c.head_dim) == (
        VOCAB, backbone.hidden_dim, backbone.num_layers, backbone.num_query_heads, backbone.num_key_value_heads,
        backbone.head_dim)
    # keras-hub's Gemma 1/2 intermediate_dim counts both GeGLU branches; its Gemma 3 does not.
    assert c.intermediate_dim == backbone.intermediate_dim // (1 if name == "gemma3" else 2)
    assert c.query_pre_attn_scalar == (32 // 4 if name == "gemma2" else backbone.head_dim)
    assert c.layer_types.count("local") == {"gemma1_mqa": 0, "gemma1_mha": 0, "gemma2": 2, "gemma3": 5}[name]
    assert (c.attn_soft_cap, c.final_soft_cap) == ((5.0, 3.0) if name == "gemma2" else (None, None))
    assert (c.use_qk_norm, c.use_post_norms) == (name == "gemma3", name in ("gemma2", "gemma3"))
    assert c.rope_scaling_factor == (8.0 if name == "gemma3" else 1.0)
    assert gemma_kit.read_config(preset[1]) == c


def test_logits_match_keras_hub(preset):
    name, _, backbone, model = preset
    error = np.abs(model.logits(IDS) - keras_hub_logits(backbone, IDS)).max()
    print(f"\n{name} ({keras.config.backend()}): max abs logit error vs keras-hub {error:.2e}")
    assert error < 1e-4


def test_greedy_tokens_match_keras_hub(preset):
    """Our cached greedy decoding vs keras-hub's argmax over the whole sequence (one forward pass:
    keras-hub's next token after every prefix must be the one we chose, which is greedy decoding)."""
    name, _, backbone, model = preset
    prompt = IDS[0, :20].tolist()
    ours = model.generate_ids([prompt], 12, stop_tokens=[])[0]
    full = np.array([prompt + ours], "int32")
    theirs = keras_hub_logits(backbone, full)[0, len(prompt) - 1:-1].argmax(-1).tolist()
    assert ours == theirs


@pytest.mark.parametrize("preset", ["gemma3"], indirect=True)
def test_greedy_tokens_match_keras_hub_generate(preset):
    """keras-hub's own cached generate loop (Gemma 3 only, to keep the suite fast)."""
    name, _, backbone, model = preset
    prompt, n = IDS[0, :20].tolist(), 12
    causal_lm = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")
    token_ids = np.zeros((1, len(prompt) + n), "int32")
    token_ids[0, :len(prompt)] = prompt
    out = causal_lm.make_generate_function()({"token_ids": token_ids, "padding_mask": token_ids > 0},
                                             stop_token_ids=None)
    theirs = np.asarray(out["token_ids"])[0, len(prompt):].tolist()
    assert model.generate_ids([prompt], n, stop_tokens=[])[0] == theirs


@pytest.mark.parametrize("preset", ["gemma2"], indirect=True)
def test_keras_hub_ignores_query_head_dim_normalize(preset):
    """keras-hub's GemmaDecoderBlock never passes the flag on: its own Gemma 2 27B scale would be wrong."""
    name, folder, _, model = preset
    unpatched = keras_hub.models.Backbone.from_preset(folder)
    assert np.abs(model.logits(IDS) - keras_hub_logits(unpatched, IDS)).max() > 1e-2


@pytest.mark.parametrize("preset", ["gemma1_mqa", "gemma2", "gemma3"], indirect=True)
def test_save_preset_round_trip(preset, tmp_path):
    name, _, _, model = preset
    if name == "gemma2":
        with pytest.raises(ValueError, match="query_pre_attn_scalar=8.0 differs from head_dim=16"):
            model.save_preset(tmp_path / "out")
        return
    folder = model.save_preset(tmp_path / "out")
    task = keras_hub.models.Gemma3CausalLM if name == "gemma3" else keras_hub.models.GemmaCausalLM
    causal_lm = task.from_preset(folder)
    error = np.abs(model.logits(IDS) - keras_hub_logits(causal_lm.backbone, IDS)).max()
    print(f"\n{name} ({keras.config.backend()}): save_preset -> keras-hub max abs logit error {error:.2e}")
    assert error < 1e-4
    ids = causal_lm.preprocessor.tokenizer("hello world")
    assert np.asarray(ids).tolist() == model.tokenizer.encode("hello world")
    np.testing.assert_array_equal(gemma_kit.load(folder).logits(IDS), model.logits(IDS))


@pytest.mark.parametrize("preset", ["gemma2", "gemma3"], indirect=True)
def test_keras_native_round_trip(preset, tmp_path):
    name, _, _, model = preset
    model.backbone.save(tmp_path / "backbone.keras")
    loaded = keras.saving.load_model(tmp_path / "backbone.keras")
    assert isinstance(loaded, gemma_kit.GemmaBackbone) and loaded.config == model.config
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(IDS)), ops.convert_to_numpy(model.backbone(IDS)))


def test_unrepresentable_configs_are_refused():
    with pytest.raises(ValueError, match="query_pre_attn_scalar=12.0 differs from head_dim=8"):
        keras_hub_backbone(tiny_gemma3_config(query_pre_attn_scalar=12.0))
    with pytest.raises(ValueError, match="hard-codes 10,000 / 1,000,000"):
        keras_hub_backbone(tiny_gemma3_config(rope_base_global=500_000.0))
    with pytest.raises(ValueError, match="5 local layers then 1 global"):
        keras_hub_backbone(tiny_gemma3_config(layer_types=("global",) + ("local",) * 5))


def test_text_model_of_a_multimodal_gemma3_preset(tmp_path):
    """Kaggle's Gemma 3 4B/12B/27B presets carry a vision encoder: we load the language model."""
    encoder = keras_hub.models.Gemma3VisionEncoder(image_size=28, patch_size=14, num_heads=2, hidden_dim=16,
                                                   num_layers=1, intermediate_dim=32, output_dim=32, pool_size=2)
    kwargs = dict(VARIANTS["gemma3"][1], image_size=28)
    multimodal = randomize(keras_hub.models.Gemma3Backbone(vocabulary_size=VOCAB, vision_encoder=encoder, **kwargs),
                           seed=3, scale=SCALE)
    multimodal.save_to_preset(str(tmp_path))
    keras_hub_tokenizer("Gemma3Backbone", tiny_tokenizer()).save_to_preset(str(tmp_path))
    model = gemma_kit.load(str(tmp_path))
    text = keras_hub_backbone(model.config)              # keras-hub's text-only twin, holding our weights
    copy_weights_to_keras_hub(model.backbone, text)
    pairs = [(text.token_embedding, multimodal.token_embedding), (text.layer_norm, multimodal.layer_norm)]
    pairs += list(zip(text.transformer_layers, multimodal.transformer_layers))
    for ours, theirs in pairs:
        assert len(ours.weights) == len(theirs.weights)
        for a, b in zip(ours.weights, theirs.weights):
            np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b), err_msg=b.path)


# -- kaggle:// handles --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gemma1_folder(tmp_path_factory):
    backbone = randomize(keras_hub.models.GemmaBackbone(vocabulary_size=VOCAB, **VARIANTS["gemma1_mqa"][1]), seed=2,
                         scale=SCALE)
    folder = tmp_path_factory.mktemp("kaggle") / "gemma_2b_en" / "2"     # the layout of a kagglehub download
    backbone.save_to_preset(str(folder))
    keras_hub_tokenizer("GemmaBackbone", tiny_tokenizer()).save_to_preset(str(folder))
    return str(folder), backbone


def test_kaggle_handle_goes_through_the_download_function(monkeypatch, gemma1_folder):
    folder, backbone = gemma1_folder
    handles = []
    monkeypatch.setattr(kaggle, "DOWNLOAD", lambda handle: handles.append(handle) or folder)
    model = gemma_kit.load("kaggle://keras/gemma/keras/gemma_2b_en/2")      # a Keras tutorial's handle
    assert handles == ["keras/gemma/keras/gemma_2b_en/2"]
    assert model.config.name == "gemma_2b_en"
    assert np.abs(model.logits(IDS) - keras_hub_logits(backbone, IDS)).max() < 1e-4
    code_gemma = gemma_kit.load("code_gemma_2b_en")                    # a preset name, as from_preset takes
    assert handles[-1] == gemma_kit.presets.preset_handle("code_gemma_2b_en").removeprefix("kaggle://")
    assert np.array_equal(code_gemma.logits(IDS), model.logits(IDS))

    def offline(handle):
        raise ConnectionError("no internet")
    monkeypatch.setattr(kaggle, "DOWNLOAD", offline)
    with pytest.raises(RuntimeError, match="Could not download 'kaggle://keras/gemma/keras/gemma_2b_en' .*licence"):
        gemma_kit.load("kaggle://keras/gemma/keras/gemma_2b_en")
    with pytest.raises(ValueError, match="not a Kaggle model handle"):
        gemma_kit.load("kaggle://gemma_2b_en")


def test_sharded_and_bfloat16_presets(tmp_path, gemma1_folder):
    _, backbone = gemma1_folder
    sharded = str(tmp_path / "sharded")
    backbone.save_to_preset(sharded, max_shard_size=0.00005)        # ~50 KB shards
    shutil.copytree(os.path.join(gemma1_folder[0], "assets"), os.path.join(sharded, "assets"))
    assert not os.path.exists(os.path.join(sharded, "model.weights.h5"))
    assert np.abs(gemma_kit.load(sharded).logits(IDS) - keras_hub_logits(backbone, IDS)).max() < 1e-4

    half = keras_hub.models.GemmaBackbone(vocabulary_size=VOCAB, dtype="bfloat16", **VARIANTS["gemma1_mqa"][1])
    half.set_weights([w.astype("float32") for w in backbone.get_weights()])
    half.save_to_preset(str(tmp_path / "half"))
    shutil.copytree(os.path.join(gemma1_folder[0], "assets"), str(tmp_path / "half" / "assets"))
    model = gemma_kit.load(str(tmp_path / "half"))                    # bfloat16 values, float32 model
    expected = ops.convert_to_numpy(ops.cast(half.token_embedding.embeddings, "float32"))
    np.testing.assert_array_equal(ops.convert_to_numpy(model.backbone.token_embedding.embeddings), expected)


# -- errors -------------------------------------------------------------------------------------------
@pytest.fixture
def broken(tmp_path, gemma1_folder):
    folder = tmp_path / "preset"
    shutil.copytree(gemma1_folder[0], folder)
    return folder


def _edit_config(folder, **changes):
    saved = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if key == "class_name":
            saved[key] = value
        else:
            saved["config"][key] = value
    (folder / "config.json").write_text(json.dumps(saved))


def test_missing_files_are_named(broken):
    os.remove(broken / "model.weights.h5")
    with pytest.raises(FileNotFoundError, match="no model.weights.h5"):
        gemma_kit.load(str(broken))
    os.remove(broken / "assets" / "tokenizer" / "vocabulary.spm")
    with pytest.raises(FileNotFoundError, match="vocabulary.spm"):
        gemma_kit.load(str(broken))
    os.remove(broken / "config.json")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        gemma_kit.load(str(broken))


def test_unknown_backbone_class(broken):
    _edit_config(broken, class_name="LlamaBackbone")
    with pytest.raises(KerasHubFormatError, match="'LlamaBackbone' is not supported"):
        gemma_kit.load(str(broken))


def test_missing_field_is_named(broken):
    saved = json.loads((broken / "config.json").read_text())
    del saved["config"]["head_dim"]
    (broken / "config.json").write_text(json.dumps(saved))
    with pytest.raises(KerasHubFormatError, match="'config.head_dim' is missing"):
        gemma_kit.read_config(str(broken))


def test_missing_tensor_is_named(broken):
    with h5py.File(broken / "model.weights.h5", "a") as f:
        del f["layers/gemma_decoder_block_1/gating_ffw_2/vars/0"]
    with pytest.raises(KerasHubFormatError, match="'layers/gemma_decoder_block_1/gating_ffw_2/vars/0' is missing"):
        gemma_kit.load(str(broken))


def test_shape_mismatch_is_named(broken):
    _edit_config(broken, num_query_heads=2)
    with pytest.raises(KerasHubFormatError, match=r"'layers/gemma_decoder_block/attention/query_dense/vars/0' "
                                                  r"has shape \(4, 32, 8\), but config.json implies \(2, 32, 8\)"):
        gemma_kit.load(str(broken))
