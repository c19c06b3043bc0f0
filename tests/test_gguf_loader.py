"""Loading GGUF files: the weight mapping on a tiny model we write ourselves, and the errors."""

import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit.loaders.gguf_file import GGUFError, read_gguf
from conftest import randomize, tiny_gemma3_config
from tiny_gguf import backbone_tensors, write_gguf


@pytest.fixture(scope="module")
def tiny():
    config = tiny_gemma3_config()
    backbone = randomize(gemma_kit.GemmaBackbone(config), seed=5)
    return config, backbone, backbone_tensors(backbone)


def test_round_trip_through_gguf_gives_the_same_logits(tmp_path, tiny):
    config, backbone, tensors = tiny
    path = write_gguf(tmp_path / "tiny.gguf", config, tensors)
    model = gemma_kit.load(path)
    for field in ("hidden_dim", "num_layers", "num_query_heads", "num_kv_heads", "head_dim", "intermediate_dim",
                  "layer_types", "sliding_window", "rope_base_global", "use_qk_norm", "use_post_norms"):
        assert getattr(model.config, field) == getattr(config, field), field
    ids = np.array([[2, 270, 271, 272, 100, 5, 9, 300 - 1, 40, 41, 42, 43]], np.int32)
    expected = ops.convert_to_numpy(backbone(ids))
    np.testing.assert_allclose(model.logits(ids), expected, atol=1e-5, rtol=1e-5)
    assert model.tokenizer.vocab_size == config.vocab_size


def test_metadata_only_read_is_fast_and_complete(gguf_path):
    gguf_file = read_gguf(gguf_path)
    assert gguf_file.metadata["general.architecture"] == "gemma3"
    assert len(gguf_file.metadata["tokenizer.ggml.tokens"]) == 262_144
    assert gguf_file.tensors["token_embd.weight"].shape == (262_144, 640)
    config = gemma_kit.read_config("gemma3_270m")
    assert config.num_parameters() == 268_098_176
    assert config.layer_types.count("global") == 3 and config.sliding_window == 512


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_bytes(b"these are my notes, not a model" * 4)
    with pytest.raises(GGUFError, match="not a GGUF file"):
        gemma_kit.load(str(path))


@pytest.mark.parametrize("name", ["model.gguf", "model.bin", "model.safetensors", "2b.pt"])
def test_empty_file_says_so(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    for read in (gemma_kit.load, gemma_kit.read_config):
        with pytest.raises(ValueError, match="empty") as error:
            read(str(path))
        assert str(path) in str(error.value)


def test_truncated_file(tmp_path, tiny):
    config, _, tensors = tiny
    path = write_gguf(tmp_path / "tiny.gguf", config, tensors)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(GGUFError, match="truncated"):
        gemma_kit.load(str(cut))
    cut.write_bytes(data[:40])                      # cut inside the metadata
    with pytest.raises(GGUFError, match="truncated"):
        gemma_kit.load(str(cut))


def test_not_a_gemma_architecture(tmp_path, tiny):
    config, _, tensors = tiny
    path = write_gguf(tmp_path / "llama.gguf", config, tensors, arch="llama")
    with pytest.raises(GGUFError, match="'llama' is not a Gemma model"):
        gemma_kit.load(path)


def test_missing_tensor_is_named(tmp_path, tiny):
    config, _, tensors = tiny
    path = write_gguf(tmp_path / "tiny.gguf", config, tensors, drop={"blk.3.ffn_up.weight"})
    with pytest.raises(GGUFError, match=r"'blk\.3\.ffn_up\.weight' is missing"):
        gemma_kit.load(path)


def test_shape_mismatch_is_named(tmp_path, tiny):
    config, _, tensors = tiny
    path = write_gguf(tmp_path / "tiny.gguf", config, tensors, reshape="blk.1.attn_q.weight")
    with pytest.raises(GGUFError, match=r"'blk\.1\.attn_q\.weight' has shape"):
        gemma_kit.load(path)


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="Known names: gemma3_270m") as error:
        gemma_kit.load("gemma9_1t")
    assert all(name in str(error.value) for name in gemma_kit.PRESETS)      # the one preset table
    with pytest.raises(ValueError, match="Did you mean 'gemma3_1b'"):
        gemma_kit.read_config("gemma3_1bb")
    with pytest.raises(FileNotFoundError):
        read_gguf("/no/such/file.gguf")


def test_bfloat16_loading_halves_the_weights_and_stays_close(tmp_path, tiny):
    config, _, tensors = tiny
    path = write_gguf(tmp_path / "tiny.gguf", config, tensors)
    full, half = gemma_kit.load(path), gemma_kit.load(path, dtype="bfloat16")
    assert half.backbone.token_embedding.embeddings.dtype == "bfloat16"
    weight_bytes = lambda m: sum(ops.convert_to_numpy(v).nbytes for v in m.backbone.weights)  # noqa: E731
    assert weight_bytes(half) * 2 == weight_bytes(full)
    ids = np.array([[2, 270, 271, 272, 100, 5, 9, 40, 41, 42, 43]], np.int32)
    a, b = full.logits(ids), half.logits(ids)
    assert b.dtype == np.float32                        # logits always come back as float32
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()  # bfloat16 keeps ~3 significant digits
    assert not np.array_equal(a, b)                     # and it really computed in bfloat16
