"""The real Gemma 3 270M against transformers on the same GGUF weights.

transformers is the oracle: it loads the same ``.gguf`` file with its own
dequantizer and its own Gemma 3 code (``tests/reference.py``, cached on disk
because its load takes a minute). We must give the same last-position logits
(max abs error <= 1e-3, float32) and the same 32 greedy tokens.
"""

import numpy as np
import pytest

from reference import PROMPTS, transformers_reference


@pytest.fixture(scope="module")
def reference(gguf_path):
    return transformers_reference(gguf_path, PROMPTS, max_new_tokens=32)


@pytest.mark.parametrize("index", range(len(PROMPTS)))
def test_logits_and_greedy_tokens_match_transformers(gemma_270m, reference, index):
    prompt = PROMPTS[index]
    expected = reference[prompt]
    ids = gemma_270m.encode_prompt(prompt)
    assert ids == expected["input_ids"].tolist(), "prompt tokenization differs from transformers"

    logits = gemma_270m.logits(ids)[0, -1]                                      # (vocab,)
    error = float(np.max(np.abs(logits - expected["logits"])))
    print(f"{prompt[:30]!r}: {len(ids)} tokens, max |logits - transformers| = {error:.2e}")
    assert error <= 1e-3

    greedy = gemma_270m.generate_ids([ids], max_new_tokens=32, stop_tokens=[])[0]
    assert greedy == expected["greedy_ids"].tolist(), (
        f"greedy continuation differs: ours {gemma_270m.tokenizer.decode(greedy)!r}, "
        f"transformers {expected['greedy_text']!r}")


def test_batch_of_prompts_equals_one_at_a_time(gemma_270m, reference):
    prompts = PROMPTS[:4]                       # 6 to 14 tokens long: padded differently in a batch
    batch = gemma_270m.generate(prompts, max_new_tokens=12, stop_tokens=[])
    for prompt, text in zip(prompts, batch):
        expected = gemma_270m.tokenizer.decode(reference[prompt]["greedy_ids"][:12].tolist())
        assert text == expected


def test_stream_yields_the_generated_text(gemma_270m):
    prompt = "Write one sentence about the moon:"
    pieces = list(gemma_270m.stream(prompt, max_new_tokens=24))
    assert len(pieces) > 3
    assert "".join(pieces) == gemma_270m.generate(prompt, max_new_tokens=24)


def test_stop_tokens_end_the_answer(gemma_270m):
    prompt = gemma_270m.encode_prompt("The capital of France is")
    free = gemma_270m.generate_ids([prompt], max_new_tokens=12, stop_tokens=[])[0]
    stop = free[5]
    stopped = gemma_270m.generate_ids([prompt], max_new_tokens=12, stop_tokens=[stop])[0]
    assert stopped == free[:free.index(stop)]             # cut before the first stop token


def test_chat_prompt_has_the_turn_markers_as_single_tokens(gemma_270m):
    tokenizer = gemma_270m.tokenizer
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Say hello in French."}])
    assert chat == "<start_of_turn>user\nSay hello in French.<end_of_turn>\n<start_of_turn>model\n"
    ids = gemma_270m.encode_prompt(chat)
    assert ids.count(tokenizer.token_to_id("<start_of_turn>")) == 2
    assert ids.count(tokenizer.token_to_id("<end_of_turn>")) == 1
    assert gemma_270m.stop_ids() == [tokenizer.eos_id, tokenizer.token_to_id("<end_of_turn>")]


def test_seeded_sampling_is_reproducible(gemma_270m):
    kwargs = dict(max_new_tokens=16, sampler="top_p", top_p=0.95, temperature=1.0)
    a = gemma_270m.generate("Once upon a time", seed=123, **kwargs)
    assert a == gemma_270m.generate("Once upon a time", seed=123, **kwargs)


@pytest.mark.parametrize("call, message", [
    (lambda m: m.generate("", max_new_tokens=4), "empty"),
    (lambda m: m.generate("Hi", max_new_tokens=0), "max_new_tokens"),
    (lambda m: m.generate("Hi", max_new_tokens=-3), "max_new_tokens"),
    (lambda m: m.generate("Hi", max_new_tokens=4, sampler="nucleus"), "Unknown sampler"),
    (lambda m: m.generate("word " * 40_000, max_new_tokens=4), "too long"),
    (lambda m: m.generate([], max_new_tokens=4), "No prompts"),
    (lambda m: m.logits([[5, 300_000]]), "token ids must be in"),
])
def test_bad_input_gets_a_clear_error(gemma_270m, call, message):
    with pytest.raises(ValueError, match=message):
        call(gemma_270m)
