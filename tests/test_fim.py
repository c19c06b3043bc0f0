"""Fill-in-the-middle (gemma_kit/fim.py) on a tiny random CodeGemma-shaped model read from a GGUF file.

The model is a Gemma 1-shaped decoder ("gemma" architecture) whose miniature vocabulary
has CodeGemma's four FIM tokens as user-defined pieces at ids 67-70.
"""

import types

import pytest
from keras import ops

import gemma_kit
from gemma_kit.fim import FILE_SEPARATOR, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, STOP_TOKENS, complete, fim_token_ids
from conftest import randomize, tiny_gemma3_config
from tiny_gguf import backbone_tensors, write_gguf

CODEGEMMA_FIM_IDS = {FIM_PREFIX: 67, FIM_MIDDLE: 68, FIM_SUFFIX: 69, FILE_SEPARATOR: 70}


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


def test_fim_prompt_is_prefix_suffix_middle():
    assert gemma_kit.fim_prompt("def f(x):\n    return ", "\n") == \
        "<|fim_prefix|>def f(x):\n    return <|fim_suffix|>\n<|fim_middle|>"
    with pytest.raises(TypeError):
        gemma_kit.fim_prompt(None, "")


def test_fim_tokens_are_single_tokens_at_codegemma_ids(tiny_codegemma):
    tokenizer = tiny_codegemma.tokenizer
    assert fim_token_ids(tokenizer) == CODEGEMMA_FIM_IDS
    ids = tiny_codegemma.encode_prompt(gemma_kit.fim_prompt("ab c", "d"))
    assert ids == [tokenizer.bos_id, 67, *tokenizer.encode("ab c"), 69, *tokenizer.encode("d"), 68]
    assert tokenizer.decode([67]) == FIM_PREFIX


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


def test_gemma3_270m_has_no_fim_tokens(gguf_path):
    """Gemma 3's vocabulary has no FIM pieces: complete() names the missing token before generating."""
    from gemma_kit.loaders.gguf_file import read_gguf
    from gemma_kit.tokenizer import GemmaTokenizer

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
