"""Gemma 4 GGUF files (llama.cpp's ``gemma4``) against transformers, on the tiny models of ``gemma4_tiny.py``.

Each variant is written as llama.cpp's converter writes it (``tiny_gguf.write_gemma4_gguf``: the gguf
package's own tensor-name map, the converter's renames, ``rope_freqs``, its metadata), loaded with
``gemma_kit.load``, and compared with the transformers model it came from: logits within 1e-4 (+ 1e-4 relative)
on every backend, the same greedy tokens (JAX pass only: generation on each backend is ``test_gemma4.py``'s
subject; the file mapping is the same on all three), the same config as the transformers folder gives.
A Q8_0 file matches transformers running on the same rounded weights. Broken files name the key or
tensor that is wrong, and the file.
"""

import dataclasses

import numpy as np
import pytest
import torch
from keras import ops

import gemma_kit
from gemma_kit.loaders.gguf_file import GGUFError, read_gguf
from gemma_kit.loaders.hf_gemma4 import gemma4_config_from_hf
from gemma_kit.models.gemma4 import Gemma4Backbone
from gemma4_tiny import VARIANTS, VOCAB, build_hf, hf_logits
from tiny_gguf import as_stored, write_gemma4_gguf

IDS = [2] + np.random.default_rng(1).integers(4, VOCAB, size=23).tolist()     # 24 tokens, window 8


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """{variant: (path of its F32 GGUF, the transformers model)}."""
    folder = tmp_path_factory.mktemp("gemma4_gguf")
    out = {}
    for i, variant in enumerate(VARIANTS):
        model = build_hf(variant, seed=10 + i)
        out[variant] = write_gemma4_gguf(folder / f"{variant}.gguf", model), model
    return out


def greedy_tokens(model, prompt, steps):
    model.generation_config.eos_token_id = None
    out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         max_new_tokens=steps, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


@pytest.fixture(scope="module")
def loaded(written):
    """{variant: gemma_kit.load(its GGUF)}, each loaded on first use."""
    cache = {}

    def load(variant):
        if variant not in cache:
            cache[variant] = gemma_kit.load(written[variant][0])
        return cache[variant]
    return load


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_match_transformers(written, loaded, variant):
    ours = loaded(variant)
    assert isinstance(ours.backbone, Gemma4Backbone)
    logits, expected = ours.logits(IDS)[0], hf_logits(written[variant][1], IDS)[0]      # (seq, vocab) each
    print(f"\n{variant}: max |logits - transformers| = {np.abs(logits - expected).max():.2e}")
    # As test_gemma4.py compares: |error| <= 1e-4 + 1e-4 |logit|. A bare 1e-4 failed once on TensorFlow at
    # 1.05e-4, float32 rounding of logits soft-capped at 30, not a wrong weight (those are off by far more).
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
    assert ours.tokenizer.vocab_size == VOCAB and ours.tokenizer.bos_id == 2


@pytest.mark.once
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_tokens_match_transformers(written, loaded, variant):
    prompt, steps = IDS[:10], 8                                          # 18 tokens: past the window
    expected = greedy_tokens(written[variant][1], prompt, steps)
    assert loaded(variant).generate_ids([prompt], steps, stop_tokens=[])[0] == expected


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_config_equals_the_one_transformers_config_gives(written, variant):
    path, theirs = written[variant]
    ours = gemma_kit.read_config(path)
    expected = gemma4_config_from_hf(theirs.config.to_dict(), "config.json")
    # Without per-layer embeddings, transformers still names a PLE vocabulary (262,144); GGUF has no table.
    ple_vocab = expected.per_layer_vocab_size if expected.per_layer_input_dim else None
    assert ours == dataclasses.replace(expected, name=ours.name, per_layer_vocab_size=ple_vocab)
    assert ours.name == "tiny_gemma4"


def test_q8_0_file_matches_transformers_on_the_rounded_weights(written, tmp_path):
    _, theirs = written["moe"]
    path = write_gemma4_gguf(tmp_path / "moe_q8_0.gguf", theirs, qtype="Q8_0")
    types = {name: info.ggml_type.name for name, info in read_gguf(path).tensors.items()}
    assert types["blk.0.attn_q.weight"] == types["blk.0.ffn_gate_up_exps.weight"] == "Q8_0"   # rows of 32
    assert types["blk.0.ffn_down_exps.weight"] == types["blk.0.ffn_down.weight"] == "F16"    # rows of 24, 48
    assert types["blk.0.ffn_gate_inp.weight"] == types["blk.0.attn_norm.weight"] == "F32"
    rounded = as_stored(theirs, "Q8_0")
    ours = gemma_kit.load(path)
    error = np.abs(ours.logits(IDS)[0] - hf_logits(rounded, IDS)[0]).max()
    print(f"\nmoe Q8_0: max |logits - transformers on the same rounded weights| = {error:.2e}")
    assert error < 1e-4
    assert np.abs(hf_logits(rounded, IDS) - hf_logits(theirs, IDS)).max() > 1e-3   # the rounding is really there


def test_optional_tensors_and_split_experts_are_read_as_llama_cpp_reads_them(written, tmp_path):
    _, theirs = written["moe"]
    scalars = {f"blk.{i}.layer_output_scale.weight" for i in range(6)}
    # Newer converters may store the experts' gate and up halves apart: ffn_gate_exps, ffn_up_exps.
    gate_up = theirs.model.layers[0].experts.gate_up_proj.detach().numpy()          # (experts, 2 * 24, hidden)
    fused = {f"blk.{i}.ffn_gate_up_exps.weight" for i in range(6)}
    split = {f"blk.{i}.ffn_{half}_exps.weight": part for i in range(6)
             for half, part in zip(("gate", "up"), np.split(
                 theirs.model.layers[i].experts.gate_up_proj.detach().numpy(), 2, axis=1))}
    path = write_gemma4_gguf(tmp_path / "llama_cpp_style.gguf", theirs, tensors=split,
                             drop=scalars | fused | {"blk.2.ffn_down_exps.scale"})
    weights = gemma_kit.load(path).backbone.weights_by_path()
    assert float(ops.convert_to_numpy(weights["block_3.layer_scalar"])[0]) == 1.0
    np.testing.assert_array_equal(ops.convert_to_numpy(weights["block_2/experts.per_expert_scale"]), np.ones(4))
    for name, half in (("gate", gate_up[:, :24]), ("up", gate_up[:, 24:])):       # (experts, 24, hidden) each
        np.testing.assert_array_equal(ops.convert_to_numpy(weights[f"block_0/experts.{name}"]), half.transpose(0, 2, 1))


@pytest.mark.parametrize("variant, change, message", [
    ("dense", dict(drop_keys={"gemma4.attention.key_length_swa"}), r"'gemma4\.attention\.key_length_swa' is missing"),
    ("dense", dict(drop_keys={"gemma4.attention.sliding_window_pattern"}), "sliding_window_pattern' is missing"),
    ("e2b", dict(drop_keys={"gemma4.embedding_length_per_layer_input"}), "embedding_length_per_layer_input' is miss"),
    ("moe", dict(drop_keys={"gemma4.expert_used_count"}), r"'gemma4\.expert_used_count' is missing"),
    ("dense", dict(metadata={"gemma4.attention.sliding_window_pattern": [True] * 3}), "has 3 entries for 6 layers"),
    ("dense", dict(metadata={"gemma4.rope.dimension_count_swa": 4}), r"dimension_count_swa' is 4, expected 8"),
    ("dense", dict(metadata={"gemma4.attention.head_count_kv": [2, 1, 2, 2, 2, 1]}), "sliding layers different"),
    ("dense", dict(metadata={"gemma4.feed_forward_length": [48, 48, 64, 48, 48, 48]}), "feed_forward_length' = "),
    ("dense", dict(tensors={"rope_freqs.weight": np.full(8, 2.0, np.float32)}), "'rope_freqs.weight' holds"),
    ("dense", dict(drop={"rope_freqs.weight"}), "'rope_freqs.weight' is missing"),
    ("dense", dict(drop={"blk.0.attn_v.weight"}), r"layers \[0, 5\] have keys but no values"),
    ("moe", dict(drop={"blk.0.ffn_gate_inp.weight"}), r"only layers \[1, 2, 3, 4, 5\] have experts"),
    ("dense", dict(tensors={"output.weight": np.zeros((VOCAB, 32), np.float32)}), "ties its output layer"),
    ("e2b", dict(metadata={"gemma4.attention.shared_kv_layers": 2}), "KV-shared local layers read layer 3"),
])
def test_a_broken_file_names_the_field_and_the_file(written, tmp_path, variant, change, message):
    path = write_gemma4_gguf(tmp_path / "broken.gguf", written[variant][1], **change)
    with pytest.raises(GGUFError, match=message) as error:
        gemma_kit.read_config(path)
    assert path in str(error.value)


def test_what_only_loading_finds_is_named_with_the_file(written, tmp_path):
    theirs = written["dense"][1]
    path = write_gemma4_gguf(tmp_path / "no_q.gguf", theirs, drop={"blk.2.attn_q.weight"})
    with pytest.raises(GGUFError, match=r"'blk\.2\.attn_q\.weight' is missing \(needed for block_2/attention"):
        gemma_kit.load(path)
    path = write_gemma4_gguf(tmp_path / "short.gguf", theirs, tensors={"blk.5.attn_k.weight": np.zeros((8, 32),
                                                                                                     np.float32)})
    with pytest.raises(GGUFError, match=r"'blk\.5\.attn_k\.weight' has shape \(32, 8\) after conversion"):
        gemma_kit.load(path)
    # llama.cpp's converter writes Gemma 4's vocabulary as BPE merges ("gemma4"): not a SentencePiece model.
    path = write_gemma4_gguf(tmp_path / "bpe.gguf", theirs, metadata={"tokenizer.ggml.model": "gemma4"})
    with pytest.raises(GGUFError, match="'tokenizer.ggml.model' is 'gemma4'") as error:
        gemma_kit.load(path)
    assert path in str(error.value)
