"""Weight-only int8 (``gemma_kit/nn/int8.py``): the arithmetic, every family, every way in, the real 270M."""

import keras
import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit.nn.int8 import Int8Weight, dequantize, int8_matmul, quantize_blocks
from gemma_kit.tuning import weight_bytes
from conftest import randomize, tiny_gemma3_config
from test_cache import _tiny
from tiny_gguf import backbone_tensors, tiny_tokenizer, write_gguf


def test_block_quantization_error_is_at_most_half_a_step():
    w = np.random.default_rng(0).normal(0, 1, (5, 64)).astype(np.float32)
    w[1, :32] = 0.0                                                       # an all-zero block
    q, scale = quantize_blocks(w)
    assert q.dtype == np.int8 and scale.shape == (5, 2)
    back = np.asarray(ops.convert_to_numpy(dequantize(q, scale)))
    step = np.repeat(scale, 32, axis=1)
    assert np.all(np.abs(back - w) <= step / 2 + 1e-7)
    assert np.all(back[1, :32] == 0.0)


@pytest.mark.parametrize("rows", [1, 3, 40])                             # row by row up to 16, one product above
def test_int8_matmul_equals_the_dequantized_product(rows):
    rng = np.random.default_rng(1)
    q, scale = quantize_blocks(rng.normal(0, 1, (96, 64)))
    x = rng.normal(0, 1, (rows, 1, 64)).astype(np.float32)
    expected = x @ np.asarray(ops.convert_to_numpy(dequantize(q, scale))).T
    got = ops.convert_to_numpy(int8_matmul(ops.convert_to_tensor(x), ops.convert_to_tensor(q),
                                           ops.convert_to_tensor(scale)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _gemma_model(backbone):
    return gemma_kit.GemmaModel(backbone, tiny_tokenizer(backbone.config.vocab_size), backbone.config)


@pytest.mark.parametrize("family", ["gemma3", "griffin"])
def test_quantized_model_stays_close_and_takes_about_a_quarter(family):
    model = _gemma_model(_tiny(family))
    ids = np.random.default_rng(2).integers(4, 320, size=(1, 24)).astype(np.int32)
    before, float_bytes = model.logits(ids), weight_bytes(model)
    model.quantize("int8")
    after = model.logits(ids)
    assert model.backbone.token_embedding.quantization_mode == "int8"
    spread = np.abs(before).max()
    assert np.abs(after - before).max() < 0.05 * spread, "int8 logits drifted from float32"
    assert np.abs(after - before).max() > 0, "nothing was quantized"
    # Only the Dense kernels and the embedding shrink (norms, Griffin's gates and conv stay float32).
    quantized = sum(int(np.prod(v.shape)) for path, v in model.backbone.weights_by_path().items()
                    if isinstance(v, Int8Weight))
    assert weight_bytes(model) <= float_bytes - quantized * (4 - 1 - 4 / 32) + 1


def _write_q8_0_gguf(path, config, tensors):
    """Like ``write_gguf`` but the matrices stored Q8_0 (as llama.cpp's ``--outtype q8_0`` does)."""
    import gguf

    float_file = write_gguf(str(path) + ".f32", config, tensors)
    reader = gguf.GGUFReader(float_file)
    writer = gguf.GGUFWriter(str(path), arch="gemma3")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        writer.add_key_value(field.name, field.contents(), field.types[0],
                             field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None)
    for name, value in tensors.items():
        if value.ndim == 2 and value.shape[1] % 32 == 0:
            writer.add_tensor(name, gguf.quants.quantize(value, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, np.ascontiguousarray(value, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def test_gguf_q8_0_blocks_are_taken_as_they_are(tmp_path):
    from gemma_kit.loaders.gguf_file import read_gguf

    config = tiny_gemma3_config()
    path = _write_q8_0_gguf(tmp_path / "tiny_q8_0.gguf", config,
                            backbone_tensors(randomize(gemma_kit.GemmaBackbone(config), seed=5)))
    as_float, as_int8 = gemma_kit.load(path), gemma_kit.load(path, quantize="int8")
    q_file, scale_file = read_gguf(path).q8_0_blocks("blk.0.ffn_down.weight")
    down = as_int8.backbone.blocks[0].mlp.down
    np.testing.assert_array_equal(ops.convert_to_numpy(down._kernel), q_file)             # the file's own int8
    np.testing.assert_array_equal(ops.convert_to_numpy(down.kernel_scale), scale_file)
    ids = np.array([[2, 270, 271, 272, 100, 5, 9, 40, 41, 42, 43]], np.int32)
    np.testing.assert_allclose(as_int8.logits(ids), as_float.logits(ids), atol=1e-4, rtol=1e-4)
    assert as_int8.generate_ids([[2, 270, 271]], 8) == as_float.generate_ids([[2, 270, 271]], 8)


def test_loading_into_int8_equals_quantizing_after_loading(tmp_path):
    """Gemma 4 E2B-like (per-layer embedding table, KV sharing) from a transformers folder."""
    from gemma4_tiny import save_hf

    save_hf(tmp_path, "e2b", seed=1)
    loaded = gemma_kit.load(str(tmp_path), quantize="int8")
    later = gemma_kit.load(str(tmp_path)).quantize("int8")
    table = loaded.backbone.per_layer_embedding.token_table
    assert table.quantization_mode == "int8" and loaded.backbone.blocks[0].attention.query.quantization_mode == "int8"
    for path, weight in loaded.backbone.weights_by_path().items():
        np.testing.assert_array_equal(np.asarray(weight), np.asarray(later.backbone.weights_by_path()[path]),
                                      err_msg=path)
    ids = np.array([[2, 270, 271, 272, 100, 5]], np.int32)
    np.testing.assert_allclose(loaded.logits(ids), later.logits(ids), atol=1e-5, rtol=1e-5)


def test_an_int8_model_saves_and_reloads_as_a_keras_file(tmp_path):
    backbone = _tiny("gemma3")
    model = _gemma_model(backbone).quantize("int8")
    ids = np.array([[2, 40, 41, 42]], np.int32)
    backbone.save(tmp_path / "int8.keras")
    again = keras.saving.load_model(tmp_path / "int8.keras")
    assert again.token_embedding.quantization_mode == "int8"
    np.testing.assert_allclose(ops.convert_to_numpy(again(ids)), model.logits(ids), atol=1e-5, rtol=1e-5)


def test_bad_quantize_arguments_are_named():
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        gemma_kit.load("gemma3_270m", quantize="int4")
    with pytest.raises(ValueError, match="mode='int8'"):
        _gemma_model(_tiny("gemma3")).quantize("nf4")
    weight = Int8Weight(*[keras.Variable(np.zeros(s, d), trainable=False) for s, d in (((4, 32), "int8"),
                                                                                    ((4, 1), "float32"))],
                        transposed=True)
    with pytest.raises(ValueError, match=r"expected \(32, 4\)"):
        weight.assign(np.zeros((4, 32), np.float32))


@pytest.mark.once
def test_real_270m_in_int8_matches_float32_greedy(gemma_270m):
    """Two prompts whose float32 greedy text has no near-tie in its first 32 tokens (others part at
    margins of 0.01-0.09 logits, which any rounding flips; benchmarks/decode.py reports 5 prompts)."""
    int8 = gemma_kit.load("gemma3_270m", quantize="int8")
    assert weight_bytes(int8) < 0.3 * weight_bytes(gemma_270m)
    for prompt in ("def fibonacci(n):", "The three primary colors are"):
        ids = gemma_270m.encode_prompt(prompt)
        assert int8.generate_ids([ids], 32, stop_tokens=[]) == gemma_270m.generate_ids([ids], 32, stop_tokens=[])
    ids = gemma_270m.encode_prompt("The capital of France is")
    error = np.abs(int8.logits(ids) - gemma_270m.logits(ids)).max()
    assert 0 < error < 1.0, f"int8 logits differ from float32 by {error}"
