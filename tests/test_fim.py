"""Fill-in-the-middle (gemma_kit/fim.py, gemma_kit/tuning/fim_data.py) on tiny random models and the real 270M.

Two tiny models: a Gemma 1-shaped CodeGemma read from a GGUF file whose vocabulary has CodeGemma's four
FIM tokens as user-defined pieces at ids 67-70, and a Gemma 3-shaped model whose vocabulary has Gemma 3's
reserved pieces ``<unused0>``..``<unused3>`` at ids 6-9 (user-defined, as in the real Gemma 3 vocabulary).
"""

import ast
import random
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit import fim, tuning
from gemma_kit.fim import FILE_SEPARATOR, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, STOP_TOKENS, complete, fim_token_ids
from gemma_kit.tokenizer import GemmaTokenizer
from gemma_kit.tuning.fim_data import fits_fim, format_fim_examples, split_line, split_random
from conftest import randomize, tiny_gemma3_config
from tiny_gguf import backbone_tensors, write_gguf

ROOT = Path(__file__).resolve().parents[1]

CODEGEMMA_FIM_IDS = {FIM_PREFIX: 67, FIM_MIDDLE: 68, FIM_SUFFIX: 69, FILE_SEPARATOR: 70}
GEMMA3_FIM_IDS = {"<unused0>": 6, "<unused1>": 7, "<unused2>": 8, "<unused3>": 9}


@pytest.fixture(scope="module")
def tiny_codegemma(tmp_path_factory):
    config = tiny_gemma3_config(num_layers=2, layer_types=("global", "global"), sliding_window=None,
                                use_post_norms=False, use_qk_norm=False, rope_base_global=10_000.0,
                                name="tiny_codegemma")
    backbone = randomize(gemma_kit.GemmaBackbone(config), seed=3)
    path = write_gguf(tmp_path_factory.mktemp("fim") / "tiny_codegemma.gguf", config, backbone_tensors(backbone),
                      arch="gemma", extra_pieces={i: t for t, i in CODEGEMMA_FIM_IDS.items()},
                      add_space_prefix=False)
    return gemma_kit.load(path)


def tiny_gemma3(seed=0):
    """A plain tiny Gemma 3: reserved pieces <unused0..3> (ids 6-9, user-defined), no FIM markers set."""
    pieces = [("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 2), ("<mask>", 3), ("[multimodal]", 3)]
    pieces += [(token, 4) for token in GEMMA3_FIM_IDS]
    pieces += [(f"<0x{b:02X}>", 6) for b in range(256)] + [(p, 1) for p in ["▁"] + [chr(c) for c in range(33, 127)]]
    k = "tokenizer.ggml."
    tokenizer = GemmaTokenizer.from_gguf_metadata({
        k + "model": "llama", k + "tokens": [p for p, _ in pieces], k + "scores": [0.0] * len(pieces),
        k + "token_type": [t for _, t in pieces], k + "bos_token_id": 2, k + "eos_token_id": 1,
        k + "unknown_token_id": 3, k + "padding_token_id": 0, k + "add_space_prefix": False})
    config = tiny_gemma3_config(vocab_size=len(pieces), num_layers=2, layer_types=("local", "global"))
    backbone = randomize(gemma_kit.GemmaBackbone(config), seed=seed, scale=0.3)
    return gemma_kit.GemmaModel(backbone, tokenizer, config, source="tiny random weights")


@pytest.fixture(scope="module")
def records():
    data = gemma_kit.data.load("stdlib_functions")
    return data["train"], data["test"]


# --- the FIM transformation ---------------------------------------------------------------------------------

def test_split_line_keeps_the_source_and_moves_one_unindented_line_to_the_middle():
    source = "def f(x):\n    if x:\n        return x + 1\n    return 0\n"
    cut = split_line(source, 2)
    assert cut == {"prefix": "def f(x):\n    if x:\n        ", "middle": "return x + 1",
                   "suffix": "\n    return 0\n"}
    for i in range(4):
        cut = split_line(source, i)
        assert cut["prefix"] + cut["middle"] + cut["suffix"] == source and "\n" not in cut["middle"]
    with pytest.raises(ValueError, match="line_index 4 is outside"):
        split_line(source, 4)
    with pytest.raises(ValueError, match="line 1 is empty"):
        split_line("a = 1\n\nb = 2\n", 1)


def test_split_random_keeps_the_source_with_a_bounded_middle(records):
    rng = random.Random(0)
    for record in records[0][:200]:
        source = record["prefix"] + record["middle"] + record["suffix"]
        cut = split_random(source, rng, max_middle=20)
        assert cut["prefix"] + cut["middle"] + cut["suffix"] == source and 1 <= len(cut["middle"]) <= 20
    with pytest.raises(ValueError, match="too short"):
        split_random("x", rng)


def test_shipped_records_parse_and_keep_test_modules_out_of_training(records):
    train, test = records
    assert len(train) == 3000 and len(test) == 200
    for record in train + test:
        assert set(record) == {"prefix", "middle", "suffix", "source", "split"}
        ast.parse(record["prefix"] + record["middle"] + record["suffix"])
    assert {r["split"] for r in test} == {"line"}
    assert 0.6 < np.mean([r["split"] == "line" for r in train]) < 0.9                     # 75% line, 25% random
    assert all("\n" not in r["middle"] and r["middle"] == r["middle"].strip() for r in test)
    assert not {r["source"] for r in train} & {r["source"] for r in test}


def test_pattern_records_are_held_out_lines_that_repeat_a_neighbour(records):
    pattern = gemma_kit.data.load("stdlib_functions", "pattern")
    assert len(pattern) >= 48                                   # lesson 6 scores 48 of them
    assert not {r["source"] for r in records[0]} & {r["source"] for r in pattern}
    sys.path.insert(0, str(ROOT / "data"))
    try:
        from make_stdlib_functions import shape
    finally:
        sys.path.remove(str(ROOT / "data"))
    for r in pattern:
        ast.parse(r["prefix"] + r["middle"] + r["suffix"])
        above, below = r["prefix"].splitlines()[-2], r["suffix"].split("\n")[1]
        assert shape(r["middle"]) in (shape(above), shape(below)), r
    assert shape("self.mode = mode") == shape("self.file = file") != shape("if mode is None:")


# --- markers and complete ------------------------------------------------------------------------------------

def test_fim_prompt_is_prefix_suffix_middle():
    assert gemma_kit.fim_prompt("def f(x):\n    return ", "\n") == \
        "<|fim_prefix|>def f(x):\n    return <|fim_suffix|>\n<|fim_middle|>"
    assert fim.fim_prompt("a", "b", fim.GEMMA3_FIM_MARKERS) == "<unused0>a<unused2>b<unused1>"
    with pytest.raises(TypeError):
        gemma_kit.fim_prompt(None, "")


def test_spm_prompt_puts_the_suffix_first_and_the_prefix_next_to_the_middle():
    assert fim.fim_prompt("a", "b", fim.GEMMA3_FIM_MARKERS, order="spm") == "<unused0><unused2>b<unused1>a"
    with pytest.raises(ValueError, match="order must be one of"):
        fim.fim_prompt("a", "b", order="pms")


def test_fim_tokens_are_single_tokens_at_codegemma_ids(tiny_codegemma):
    tokenizer = tiny_codegemma.tokenizer
    assert fim_token_ids(tokenizer) == CODEGEMMA_FIM_IDS
    assert fim.fim_markers(tiny_codegemma) == fim.CODEGEMMA_FIM_MARKERS
    ids = tiny_codegemma.encode_prompt(gemma_kit.fim_prompt("ab c", "d"))
    assert ids == [tokenizer.bos_id, 67, *tokenizer.encode("ab c"), 69, *tokenizer.encode("d"), 68]
    assert tokenizer.decode([67]) == FIM_PREFIX


def test_gemma3_markers_only_after_enable_fim():
    model = tiny_gemma3()
    with pytest.raises(ValueError, match=r"no fill-in-the-middle token <\|fim_prefix\|>.*FIM adapter"):
        model.complete("def f", "return x")
    assert fim.enable_fim(model) == fim.GEMMA3_FIM_MARKERS and fim.fim_markers(model) == fim.GEMMA3_FIM_MARKERS
    ids = model.encode_prompt(fim.fim_prompt("ab", "c", model.fim_markers))
    assert ids == [2, 6, *model.tokenizer.encode("ab"), 8, *model.tokenizer.encode("c"), 7]
    with pytest.raises(ValueError, match="roles"):
        fim.enable_fim(model, {"prefix": "<unused0>"})
    with pytest.raises(ValueError, match="<unused9>"):
        fim.enable_fim(model, dict(fim.GEMMA3_FIM_MARKERS, end="<unused9>"))


def test_complete_returns_only_the_middle_up_to_the_first_stop_token(tiny_codegemma):
    model, before, after, steps = tiny_codegemma, "def f", "return x", 12
    prompt = model.encode_prompt(gemma_kit.fim_prompt(before, after))
    raw = model.generate_ids([prompt], steps, stop_tokens=[])[0]        # what the random model writes
    # Make <|file_separator|> the greedy choice at step k: its output row becomes a slightly longer copy of
    # the row of the token the model picked there (and never before), so its logit beats that token's.
    k = next(i for i in range(2, steps) if raw[i] not in raw[:i])
    embeddings = model.backbone.token_embedding.embeddings
    saved = ops.convert_to_numpy(embeddings)
    biased = saved.copy()
    biased[70] = 1.05 * saved[raw[k]]
    embeddings.assign(biased)
    try:
        raw = model.generate_ids([prompt], steps, stop_tokens=[])[0]
        stop_ids = model.stop_ids(list(STOP_TOKENS))
        assert sorted(stop_ids) == [1, 67, 68, 69, 70]
        cut = next(i for i, t in enumerate(raw) if t in stop_ids)      # the first FIM / separator / eos token
        assert 1 <= cut < steps - 1 and raw[cut] in stop_ids
        expected = model.tokenizer.decode(raw[:cut])
        assert expected
        assert complete(model, before, after, max_new_tokens=steps) == expected
        assert model.complete(before, after, max_new_tokens=steps) == expected
        # sampling options pass through; a seeded draw is repeatable and also ends before any stop token
        drawn = model.complete(before, after, max_new_tokens=steps, sampler="top_k", top_k=5, seed=0)
        assert drawn == model.complete(before, after, max_new_tokens=steps, sampler="top_k", top_k=5, seed=0)
        assert not any(t in drawn for t in CODEGEMMA_FIM_IDS)
    finally:
        embeddings.assign(saved)


def test_batched_complete_equals_one_at_a_time():
    model = tiny_gemma3(seed=1)
    fim.enable_fim(model)
    befores, afters = ["def f(x):\n    return ", "a = 1\nb = ", "x"], ["\n", "\nprint(a + b)\n", "y = x\n"]
    batched = model.complete(befores, afters, max_new_tokens=6)
    assert isinstance(batched, list) and len(batched) == 3
    assert batched == [model.complete(b, a, max_new_tokens=6) for b, a in zip(befores, afters)]
    with pytest.raises(ValueError, match="same length"):
        model.complete(befores, afters[:2])


def test_gemma3_270m_has_no_fim_tokens(gguf_path):
    """Gemma 3's vocabulary has no CodeGemma pieces, but has the reserved pieces the FIM adapter uses."""
    from gemma_kit.loaders.gguf_file import read_gguf

    tokenizer = GemmaTokenizer.from_gguf_metadata(read_gguf(gguf_path).metadata)
    for token in CODEGEMMA_FIM_IDS:
        with pytest.raises(ValueError):
            tokenizer.token_to_id(token)
    model = types.SimpleNamespace(tokenizer=tokenizer)      # complete() checks the vocabulary first
    with pytest.raises(ValueError, match=r"no fill-in-the-middle token <\|fim_prefix\|>.*CodeGemma"):
        complete(model, "def f", "return x")
    with pytest.raises(ValueError) as info:
        fim_token_ids(tokenizer)
    assert all(token in str(info.value) for token in CODEGEMMA_FIM_IDS)      # every missing token is named
    assert fim_token_ids(tokenizer, fim.GEMMA3_FIM_MARKERS) == GEMMA3_FIM_IDS
    assert tokenizer.encode("a<unused0>b")[1] == 6                          # matched whole inside text


# --- training data and the adapter file ---------------------------------------------------------------------

@pytest.mark.parametrize("order", fim.ORDERS)
def test_format_fim_examples_puts_the_loss_on_the_middle_and_the_end_marker(order):
    model = tiny_gemma3()
    markers, tokenizer = fim.GEMMA3_FIM_MARKERS, model.tokenizer
    examples = [{"prefix": "def f(x):\n    ", "middle": "return x", "suffix": "\n"},
                {"prefix": "a", "middle": "b", "suffix": "c"}]
    data = format_fim_examples(tokenizer, examples, markers, sequence_length=40, response_length=12, order=order)
    for i, example in enumerate(examples):
        prompt = model.encode_prompt(fim.fim_prompt(example["prefix"], example["suffix"], markers, order))
        middle = tokenizer.encode(example["middle"]) + [9]                    # <unused3> ends the middle
        r = len(middle)
        assert data["y"][i, :r].tolist() == middle and not data["y"][i, r:].any()
        assert data["sample_weight"][i].tolist() == [1.0] * r + [0.0] * (12 - r)
        positions = data["x"]["target_positions"][i, :r]
        assert data["x"]["token_ids"][i, positions[0]] == prompt[-1]         # the prompt's last token predicts it
        full = prompt + middle
        assert data["x"]["token_ids"][i, :len(full) - 1].tolist() == full[:-1]
        assert data["x"]["padding_mask"][i].sum() == len(full) - 1
    assert not fits_fim(tokenizer, examples[0], markers, 10, 12)
    with pytest.raises(ValueError, match="example 0 has"):
        format_fim_examples(tokenizer, examples, markers, sequence_length=10, response_length=12)


def test_an_adapter_records_its_fim_markers_and_load_adapter_enables_them(tmp_path):
    tuned = tiny_gemma3(seed=2)
    fim.enable_fim(tuned, order="spm")
    tuning.enable_lora(tuned, rank=2, targets=("query", "value"), verbose=False)
    for variable in tuning.lora_variables(tuning.lora_layers(tuned)[0]):
        variable.assign(np.full(variable.shape, 0.1, "float32"))
    path = tuning.save_adapter(tuned, tmp_path / "fim.lora.safetensors")
    meta = tuning.read_adapter_metadata(path)
    assert meta["fim_markers"] == fim.GEMMA3_FIM_MARKERS and meta["fim_order"] == "spm"
    base = tiny_gemma3(seed=2)                                  # the same weights, no LoRA, no markers
    with pytest.raises(ValueError, match="no fill-in-the-middle token"):
        base.complete("a", "b")
    tuning.load_adapter(base, path)
    assert base.fim_markers == fim.GEMMA3_FIM_MARKERS and base.fim_order == "spm"
    assert base.complete("def f", "\n", max_new_tokens=5) == tuned.complete("def f", "\n", max_new_tokens=5)
    tuning.remove_lora(base)                                    # back to the plain base model: no markers either
    with pytest.raises(ValueError, match="no fill-in-the-middle token"):
        base.complete("a", "b")
    assert not hasattr(base, "fim_order")


@pytest.mark.once
def test_shipped_adapter_writes_one_line_where_the_base_model_rambles(gemma_270m, records):
    """The shipped adapter (data/make_fim_adapter.py) answers a held-out hole with one line and stops at the
    end marker; the base model, asked in the same format, runs on across lines."""
    model, test = gemma_270m, records[1][:8]
    befores, afters = [r["prefix"] for r in test], [r["suffix"] for r in test]
    fim.enable_fim(model, order="spm")                          # the base model, asked in the same format
    try:
        base = model.complete(befores, afters, max_new_tokens=32)
        tuning.load_adapter(model, gemma_kit.data.file("gemma3_270m_fim.lora.safetensors"))
        tuned = model.complete(befores, afters, max_new_tokens=32)
    finally:
        tuning.remove_lora(model) if tuning.lora_state(model) else None
        for name in ("fim_markers", "fim_order"):               # remove_lora drops them; not if loading failed
            model.__dict__.pop(name, None)
    one_line = lambda middles: sum(bool(m.strip()) and "\n" not in m for m in middles)   # noqa: E731
    exact = lambda middles: sum(m.strip() == r["middle"] for m, r in zip(middles, test))   # noqa: E731
    assert one_line(tuned) >= 6 and one_line(base) <= 2, (base, tuned)
    assert exact(base) == 0, base
