"""The Hugging Face format, both ways, against transformers on tiny random models.

Loading: tiny Gemma 1 (MQA and MHA), Gemma 2 and Gemma 3 models built and saved by transformers
(every weight random, norms included) give transformers' logits on 40 tokens (longer than the
sliding window of 8) and the same greedy tokens. Also: sharded folders, the multimodal Gemma 3
layout, a tokenizer.json-only folder, the errors, ``hf://`` handles through an injected download,
and config.json files in the transformers 4 dialect read the way transformers reads them.
Saving: ``save_hf`` writes a folder transformers loads with our logits.
"""

import json
import os
import shutil

import numpy as np
import pytest

import torch  # noqa: E402  the oracle; installed by the test set-up
import transformers  # noqa: E402

import gemma_kit  # noqa: E402
import keras  # noqa: E402
from keras import ops  # noqa: E402
from gemma_kit.models.gemma.config import gemma2_layer_types  # noqa: E402
from gemma_kit.loaders import hf_config, huggingface as hf  # noqa: E402
from gemma_kit.loaders.hf_tokenizer import JsonTokenizer, NoTokenizerError  # noqa: E402
from gemma_kit.loaders.hf_config import config_from_hf  # noqa: E402
from gemma_kit.loaders.hf_files import HuggingFaceFormatError  # noqa: E402
from gemma_kit.tokenizer import GemmaTokenizer, StreamingDecoder  # noqa: E402
from conftest import randomize, tiny_gemma3_config  # noqa: E402
from tiny_gguf import tiny_tokenizer  # noqa: E402

VOCAB = 320
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_attention_heads=4, head_dim=8,
              max_position_embeddings=512)
VARIANTS = {   # name: (transformers config class, extra fields)
    "gemma1_mqa": ("GemmaConfig", dict(num_hidden_layers=3, num_key_value_heads=1)),
    "gemma1_mha": ("GemmaConfig", dict(num_hidden_layers=3, num_key_value_heads=4)),
    # Small caps so that tanh bends; query_pre_attn_scalar != head_dim.
    "gemma2": ("Gemma2Config", dict(num_hidden_layers=4, num_key_value_heads=2, sliding_window=8,
                                    attn_logit_softcapping=3.0, final_logit_softcapping=5.0,
                                    query_pre_attn_scalar=12)),
    # local, local, global, local, local, global; separate RoPE bases; linear scaling on global layers.
    "gemma3": ("Gemma3TextConfig", dict(num_hidden_layers=6, num_key_value_heads=2, sliding_window=8,
                                        sliding_window_pattern=3, rope_theta=50_000.0, rope_local_base_freq=500.0,
                                        rope_scaling={"rope_type": "linear", "factor": 2.0},
                                        query_pre_attn_scalar=6)),
}
CAUSAL_LM = {"GemmaConfig": "GemmaForCausalLM", "Gemma2Config": "Gemma2ForCausalLM",
             "Gemma3TextConfig": "Gemma3ForCausalLM"}



def randomize_torch(model, seed):
    """Random values for every parameter: transformers starts norms at zero, which would hide a mix-up."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters()):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()


def build_hf(variant, seed=0):
    config_class, extra = VARIANTS[variant]
    config = getattr(transformers, config_class)(**COMMON, **extra, attn_implementation="eager")
    return randomize_torch(getattr(transformers, CAUSAL_LM[config_class])(config), seed)


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def quick_logits(model, ids):
    """Our logits for a test beyond the first: compiled on JAX (its op-by-op first run is slower),
    eager elsewhere (tracing a tf.function costs more than running a tiny model)."""
    if keras.config.backend() == "jax":
        return model.logits(ids)[0]
    return np.asarray(ops.convert_to_numpy(model.backbone(np.asarray([ids], np.int32))))[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{variant: (folder, transformers model)}: each saved with save_pretrained plus a tokenizer.model."""
    out = {}
    for i, variant in enumerate(VARIANTS):
        folder = str(tmp_path_factory.mktemp(variant))
        model = build_hf(variant, seed=i)
        model.save_pretrained(folder)
        tiny_tokenizer(add_space_prefix=False).save(os.path.join(folder, "tokenizer.model"))
        out[variant] = folder, model
    return out


IDS = [2] + np.random.default_rng(0).integers(4, VOCAB, size=39).tolist()    # 40 tokens, window 8


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_and_greedy_tokens_match_transformers(saved, variant):
    folder, theirs = saved[variant]
    ours = gemma_kit.load(folder)
    assert isinstance(ours.tokenizer, GemmaTokenizer)
    error = np.abs(ours.logits(IDS)[0] - hf_logits(theirs, IDS)).max()
    print(f"\n{variant}: max |logits - transformers| = {error:.2e}")
    assert error < 1e-4

    prompt, steps = IDS[:20], 16                                    # 36 tokens: wraps the window
    theirs.generation_config.eos_token_id = None                    # never stop early
    expected = theirs.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                               max_new_tokens=steps, do_sample=False, pad_token_id=0)[0, len(prompt):].tolist()
    assert ours.generate_ids([prompt], steps, stop_tokens=[])[0] == expected


def test_config_fields_are_read(saved):
    g2 = gemma_kit.read_config(saved["gemma2"][0])
    assert (g2.layer_types, g2.sliding_window, g2.attn_soft_cap, g2.final_soft_cap, g2.query_pre_attn_scalar) == (
        gemma2_layer_types(4), 8, 3.0, 5.0, 12.0)
    g3 = gemma_kit.read_config(saved["gemma3"][0])
    assert g3.layer_types == ("local", "local", "global") * 2 and g3.use_qk_norm and g3.use_post_norms
    assert (g3.rope_base_global, g3.rope_base_local, g3.rope_scaling_factor) == (50_000.0, 500.0, 2.0)
    g1 = gemma_kit.read_config(saved["gemma1_mqa"][0])
    assert g1.num_kv_heads == 1 and not g1.use_post_norms and g1.query_pre_attn_scalar == g1.head_dim


def test_sharded_checkpoint_loads(saved, tmp_path):
    _, theirs = saved["gemma3"]
    theirs.save_pretrained(tmp_path, max_shard_size="60KB")
    shards = [f for f in os.listdir(tmp_path) if f.endswith(".safetensors")]
    assert len(shards) > 1 and "model.safetensors.index.json" in os.listdir(tmp_path)
    ours = gemma_kit.load(str(tmp_path))
    assert not ours.tokenizer                                       # no tokenizer file: logits still work
    assert np.abs(quick_logits(ours, IDS) - hf_logits(theirs, IDS)).max() < 1e-4
    with pytest.raises(NoTokenizerError, match="has no tokenizer"):
        ours.generate("hello", max_new_tokens=2)

    index = json.load(open(tmp_path / "model.safetensors.index.json"))
    shard = index["weight_map"]["model.layers.5.mlp.up_proj.weight"]
    os.remove(tmp_path / shard)
    with pytest.raises(HuggingFaceFormatError,
                       match=rf"shard '{shard}' is missing \(.*index\.json puts tensor 'model\..*' in it\)"):
        gemma_kit.load(str(tmp_path))


def test_multimodal_gemma3_loads_its_language_model(tmp_path):
    config = transformers.Gemma3Config(
        text_config=dict(**COMMON, **VARIANTS["gemma3"][1]),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14), mm_tokens_per_image=4, attn_implementation="eager")
    theirs = randomize_torch(transformers.Gemma3ForConditionalGeneration(config), seed=7)
    theirs.save_pretrained(tmp_path)
    ours = gemma_kit.load(str(tmp_path))
    assert ours.config.rope_scaling_factor == 2.0 and ours.config.vocab_size == VOCAB
    assert np.abs(quick_logits(ours, IDS) - hf_logits(theirs, IDS)).max() < 1e-4


def test_tokenizer_json_only_folder(saved, tmp_path):
    shutil.copytree(saved["gemma1_mqa"][0], tmp_path, dirs_exist_ok=True)
    json.dump({"tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>",
               "pad_token": "<pad>", "unk_token": "<unk>"}, open(tmp_path / "tokenizer_config.json", "w"))
    transformers.AutoTokenizer.from_pretrained(str(tmp_path)).save_pretrained(str(tmp_path))   # writes tokenizer.json
    os.remove(tmp_path / "tokenizer.model")
    ours = gemma_kit.load(str(tmp_path))
    assert isinstance(ours.tokenizer, JsonTokenizer)
    sp = tiny_tokenizer(add_space_prefix=False)
    for text in ["hello world", "  two  spaces\tand tab", "<start_of_turn>user\nhi<end_of_turn>\n", "ünïcødé €"]:
        assert ours.tokenizer.encode(text) == sp.encode(text), text
        assert ours.tokenizer.decode(sp.encode(text, add_bos=True)) == sp.decode(sp.encode(text, add_bos=True))
    assert (ours.tokenizer.bos_id, ours.tokenizer.eos_id, ours.tokenizer.token_to_id("<end_of_turn>")) == (2, 1, 5)
    for ids in ([266, 3, 250, 165, 17], [261, 71, 201]):                # <unk>, broken UTF-8 byte sequences
        assert ours.tokenizer.decode(ids) == sp.decode(ids), ids
    ids = [270, 271, 4, 246, 165, 158, 134, 266, 3, 5, 1]      # "hi<start_of_turn>😀d ⁇ <end_of_turn>"
    decoder = StreamingDecoder(ours.tokenizer)                         # what model.stream uses
    assert "".join(decoder.push(i) for i in ids) + decoder.flush() == ours.tokenizer.decode(ids) == sp.decode(ids)


def test_bfloat16_checkpoint_loads(tmp_path):
    theirs = build_hf("gemma1_mqa", seed=5).to(torch.bfloat16)
    theirs.save_pretrained(tmp_path)
    ours = gemma_kit.load(str(tmp_path))                            # bfloat16 weights, float32 compute
    assert ours.backbone.token_embedding.embeddings.dtype == "float32"
    # (theirs.float() would keep the bfloat16-rounded embedding scale and RoPE buffers: reload instead)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32,
                                                              attn_implementation="eager")
    assert np.abs(quick_logits(ours, IDS) - hf_logits(theirs, IDS)).max() < 1e-4


@pytest.fixture
def gemma1_copy(saved, tmp_path):
    shutil.copytree(saved["gemma1_mqa"][0], tmp_path, dirs_exist_ok=True)
    return tmp_path


def _edit_weights(folder, edit):
    from safetensors.numpy import load_file, save_file
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_is_named(gemma1_copy):
    _edit_weights(gemma1_copy, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(HuggingFaceFormatError,
                       match=r"'model\.layers\.1\.mlp\.up_proj\.weight' is missing from model\.safetensors"):
        gemma_kit.load(str(gemma1_copy))


def test_wrong_shape_is_named(gemma1_copy):
    def cut(tensors):
        tensors["model.layers.2.self_attn.q_proj.weight"] = tensors["model.layers.2.self_attn.q_proj.weight"][:, :-1]
    _edit_weights(gemma1_copy, cut)
    with pytest.raises(HuggingFaceFormatError, match=r"'model\.layers\.2\.self_attn\.q_proj\.weight' has shape "
                                                     r"\(32, 31\), but the config expects \(32, 32\)"):
        gemma_kit.load(str(gemma1_copy))


def test_config_problems_are_named(gemma1_copy):
    config = json.load(open(gemma1_copy / "config.json"))
    json.dump(dict(config, model_type="llama"), open(gemma1_copy / "config.json", "w"))
    with pytest.raises(HuggingFaceFormatError, match=r"config\.json: model_type 'llama' is not a Gemma model"):
        gemma_kit.load(str(gemma1_copy))
    os.remove(gemma1_copy / "config.json")
    with pytest.raises(HuggingFaceFormatError, match="config.json is missing"):
        gemma_kit.load(str(gemma1_copy))
    json.dump(config, open(gemma1_copy / "config.json", "w"))
    os.remove(gemma1_copy / "model.safetensors")
    with pytest.raises(HuggingFaceFormatError, match="no weights: expected model.safetensors"):
        gemma_kit.load(str(gemma1_copy))


def test_corrupt_weights_file_is_named(gemma1_copy):
    weights = gemma1_copy / "model.safetensors"
    data = weights.read_bytes()
    for broken in (data[:len(data) // 2], b"", b"not a safetensors file" * 4):   # truncated, empty, garbage
        weights.write_bytes(broken)
        with pytest.raises(HuggingFaceFormatError, match="not a readable .safetensors file") as error:
            gemma_kit.load(str(gemma1_copy))
        assert str(weights) in str(error.value)


def test_hf_handles_go_through_the_download_function(saved, monkeypatch):
    calls = []

    def fake_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, allow_patterns))
        return saved["gemma1_mha"][0]

    monkeypatch.setattr(hf, "DOWNLOAD", fake_download)
    model = gemma_kit.load("hf://google/tiny-gemma@abc123")
    assert model.config.num_kv_heads == 4 and model.source == "hf://google/tiny-gemma@abc123"
    assert gemma_kit.read_config("hf://google/tiny-gemma").num_layers == 3
    assert [c[:2] for c in calls] == [("google/tiny-gemma", "abc123"), ("google/tiny-gemma", None)]
    assert {"config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.model"} <= set(calls[0][2])
    with pytest.raises(ValueError, match="expected hf://org/name"):
        gemma_kit.load("hf://no-organisation")

    def offline(**kwargs):
        raise ConnectionError("no network")
    monkeypatch.setattr(hf, "DOWNLOAD", offline)
    with pytest.raises(hf.HubDownloadError, match="Could not download 'hf://google/gemma-3-1b-it'.*no network"):
        gemma_kit.load("hf://google/gemma-3-1b-it")


# -- config.json as the Hub has it (transformers 4 dialect), read as transformers reads it --------------
HUB_CONFIGS = {
    "gemma-2b": dict(model_type="gemma", hidden_act="gelu", hidden_size=2048, intermediate_size=16384,
                     num_attention_heads=8, num_hidden_layers=18, num_key_value_heads=1, head_dim=256,
                     rope_scaling=None, rope_theta=10000.0, vocab_size=256000),
    "gemma-2-27b": dict(model_type="gemma2", hidden_size=4608, intermediate_size=36864, num_attention_heads=32,
                        num_hidden_layers=46, num_key_value_heads=16, head_dim=128, query_pre_attn_scalar=144,
                        attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=4096,
                        cache_implementation="hybrid", rope_theta=10000.0, hidden_activation="gelu_pytorch_tanh"),
    "gemma-3-1b": dict(model_type="gemma3_text", hidden_size=1152, intermediate_size=6912, num_attention_heads=4,
                       num_hidden_layers=26, num_key_value_heads=1, head_dim=256, max_position_embeddings=32768,
                       rope_local_base_freq=10000, rope_scaling=None, rope_theta=1000000, sliding_window=512,
                       sliding_window_pattern=6, query_pre_attn_scalar=256, vocab_size=262144),
    # The multimodal 4B lists only what differs from Gemma3TextConfig's defaults.
    "gemma-3-4b": dict(model_type="gemma3", text_config=dict(
        hidden_size=2560, intermediate_size=10240, model_type="gemma3_text", num_hidden_layers=34,
        rope_scaling={"factor": 8.0, "rope_type": "linear"}, sliding_window=1024)),
}


def _as_transformers_reads_it(values):
    """The fields we need, from transformers' own parsing of the same config.json."""
    c = transformers.AutoConfig.for_model(**values)
    c = getattr(c, "text_config", c)
    rope = c.rope_parameters
    full, sliding = (rope["full_attention"], rope["sliding_attention"]) if "full_attention" in rope else (rope, rope)
    types = tuple("local" if t == "sliding_attention" else "global"
                  for t in getattr(c, "layer_types", None) or ["full_attention"] * c.num_hidden_layers)
    return dict(vocab_size=c.vocab_size, hidden_dim=c.hidden_size, num_layers=c.num_hidden_layers,
                num_query_heads=c.num_attention_heads, num_kv_heads=c.num_key_value_heads, head_dim=c.head_dim,
                intermediate_dim=c.intermediate_size, layer_types=types,
                query_pre_attn_scalar=float(getattr(c, "query_pre_attn_scalar", c.head_dim)),
                attn_soft_cap=getattr(c, "attn_logit_softcapping", None),
                final_soft_cap=getattr(c, "final_logit_softcapping", None),
                rope_base_global=float(full["rope_theta"]), rope_base_local=float(sliding["rope_theta"]),
                rope_scaling_factor=float(full.get("factor", 1.0)), max_sequence_length=c.max_position_embeddings)


@pytest.mark.parametrize("name", list(HUB_CONFIGS))
def test_hub_configs_read_as_transformers_reads_them(name):
    ours = config_from_hf(HUB_CONFIGS[name], f"{name}/config.json").to_dict()
    expected = _as_transformers_reads_it(HUB_CONFIGS[name])
    expected["layer_types"] = list(expected["layer_types"])
    assert {k: ours[k] for k in expected} == expected


def test_gemma3_270m_config_matches_the_gguf():
    values = dict(HUB_CONFIGS["gemma-3-1b"], hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                  sliding_window_pattern=None, _sliding_window_pattern=6, rope_local_base_freq=10000.0)
    ours = config_from_hf(values).to_dict()
    gguf = gemma_kit.read_config("gemma3_270m").to_dict()
    assert {k: v for k, v in ours.items() if k != "name"} == {k: v for k, v in gguf.items() if k != "name"}


def test_defaults_are_transformers_defaults():
    for model_type, values in hf_config.DEFAULTS.items():
        c = transformers.AutoConfig.for_model(model_type)
        rope = c.rope_parameters
        actual = {k: getattr(c, k, None) for k in values}
        actual["rope_theta"] = (rope.get("full_attention") or rope)["rope_theta"]
        if "sliding_attention" in rope:
            actual["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
            actual["sliding_window_pattern"] = c._sliding_window_pattern
        assert actual == values, model_type


# -- save_hf ----------------------------------------------------------------------------------------
OUR_VARIANTS = {
    "gemma1": dict(layer_types=(), sliding_window=None, use_post_norms=False, use_qk_norm=False, num_kv_heads=1,
                   rope_base_global=10_000.0),
    "gemma2": dict(layer_types=gemma2_layer_types(6), attn_soft_cap=3.0, final_soft_cap=5.0, use_qk_norm=False,
                   rope_base_global=10_000.0, query_pre_attn_scalar=12.0),
    "gemma3": dict(rope_base_local=500.0, rope_scaling_factor=2.0),
}


@pytest.mark.parametrize("variant", list(OUR_VARIANTS))
def test_save_hf_round_trip_through_transformers(variant, tmp_path):
    config = tiny_gemma3_config(**OUR_VARIANTS[variant])
    backbone = randomize(gemma_kit.GemmaBackbone(config), seed=3, scale=0.3)
    model = gemma_kit.GemmaModel(backbone, tiny_tokenizer(add_space_prefix=False), config)
    model.save_hf(tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.model", "generation_config.json"} <= set(os.listdir(tmp_path))
    ours = model.logits(IDS)[0]
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    error = np.abs(hf_logits(theirs, IDS) - ours).max()
    print(f"\nsave_hf {variant}: max |transformers - ours| = {error:.2e}")
    assert error < 1e-4
    assert np.array_equal(quick_logits(gemma_kit.load(str(tmp_path)), IDS), quick_logits(model, IDS))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert tokenizer.encode("hello world", add_special_tokens=False) == model.tokenizer.encode("hello world")
    assert json.load(open(tmp_path / "generation_config.json"))["eos_token_id"] == [1, 5]


def test_save_hf_refuses_what_transformers_cannot_express(tmp_path):
    config = tiny_gemma3_config(use_post_norms=False, use_qk_norm=False)        # Gemma 1 with local layers
    model = gemma_kit.GemmaModel(gemma_kit.GemmaBackbone(config), None, config)
    with pytest.raises(ValueError, match="sliding-window layers without post-norms"):
        model.save_hf(tmp_path)
    assert not os.listdir(tmp_path)
