"""``model.chat()``: a chat session whose cache lives between turns (``gemma_kit/session.py``).

Each turn must answer exactly what ``generate_ids`` answers when the whole conversation so far is
sent as one prompt, while feeding only the turn's new tokens. Tiny random models: Gemma 3 (sliding
window 8, so the rings wrap across turns), Griffin (attention window 6, recurrent state) and a
Gemma 4 E2B-like model (KV sharing, per-layer embeddings; Gemma 4's chat format with thinking on),
with two or three layers each.
Their output embeddings favour the letters a-z, so an answer's text encodes back to the very ids
the model sampled (a random model would write byte pieces that do not): then nothing is fed twice.

Compiling is what costs time here, so the messages are chosen for few shapes: every turn feeds
33 tokens (one piece of 32, then the last token through the decoding step), and one cache size
(``MAX_LENGTH``) serves every session and ``generate``'s cache for prompts of 65-128 tokens.
"""

import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit.models.gemma4 import Gemma4Config
from gemma_kit.models.griffin import GriffinConfig
from gemma_kit.session import power_of_two_pieces
from conftest import randomize, tiny_gemma3_config
from tiny_gguf import tiny_vocabulary

GEMMA4_PIECES = {6: "<|turn>", 7: "<turn|>", 8: "<|channel>", 9: "<channel|>", 10: "<|think|>"}
FIRST = {"gemma3": ("be brief", "hi friend"), "griffin": ("be brief", "hi friend"), "gemma4": (None, "hello")}
MESSAGES = ["so what comes next", "and then what else"]            # 15 letters: 33 tokens a turn
STEPS = 4                                                          # the letter model never stops: 4 letters
MAX_LENGTH = 256


def tokenizer(extra_pieces=None):
    """A SentencePiece tokenizer over ``tiny_gguf``'s vocabulary (Gemma's turn markers included)."""
    from gemma_kit.tokenizer import GemmaTokenizer

    pieces, k = tiny_vocabulary(320, extra_pieces), "tokenizer.ggml."
    return GemmaTokenizer.from_gguf_metadata({
        k + "model": "llama", k + "tokens": [p for p, _ in pieces], k + "token_type": [t for _, t in pieces],
        k + "scores": [0.0 if t != 1 else -float(i) for i, (_, t) in enumerate(pieces)], k + "add_space_prefix": False,
        k + "bos_token_id": 2, k + "eos_token_id": 1, k + "unknown_token_id": 3, k + "padding_token_id": 0})


def build(family):
    """A tiny model of ``family`` with a few layers (compiling costs per layer) and its tokenizer."""
    if family == "gemma3":                                     # one local layer (window 8) and one global
        config = tiny_gemma3_config(num_layers=2, layer_types=("local", "global"))
        backbone, vocab = randomize(gemma_kit.GemmaBackbone(config, random_init=False), seed=5), tokenizer()
    elif family == "griffin":                                  # a recurrent block, then local attention (window 6)
        config = GriffinConfig(vocab_size=320, width=32, mlp_expanded_width=64, num_heads=4, lru_width=48,
                               block_types=("recurrent", "attention"), attention_window_size=6, name="tiny_griffin")
        backbone = randomize(gemma_kit.GriffinBackbone(config, random_init=False), seed=5, scale=0.3)
        vocab = tokenizer()
    else:                                                      # KV sharing (the last layer borrows), PLE
        config = Gemma4Config(vocab_size=320, hidden_dim=32, num_layers=3, num_query_heads=4, num_kv_heads=1,
                              head_dim=8, global_head_dim=16, intermediate_dim=48, sliding_window=8,
                              layer_types=("local", "global", "global"), num_kv_shared_layers=1,
                              use_double_wide_mlp=True, per_layer_input_dim=8, final_soft_cap=30.0, rope_fraction_global=0.25,
                              max_sequence_length=512, name="tiny_gemma4")
        backbone, rng = gemma_kit.Gemma4Backbone(config, random_init=False), np.random.default_rng(5)
        for variable in backbone.weights:        # Gemma 4's norms and layer scalars multiply: draw them around 1
            centre = 1.0 if "norm" in variable.path or variable.path.endswith(("scale", "layer_scalar")) else 0.0
            variable.assign(rng.normal(centre, 0.3, variable.shape).astype("float32"))
        vocab = tokenizer(GEMMA4_PIECES)
    letters = [vocab.token_to_id(c) for c in "abcdefghijklmnopqrstuvwxyz"]
    table = backbone.token_embedding.embeddings                 # tied: also the output layer
    scale = np.full((table.shape[0], 1), 0.05, np.float32)      # (vocab, 1): other tokens' logits are small
    scale[letters] = 1.0
    table.assign(ops.convert_to_numpy(table) * scale)
    return gemma_kit.GemmaModel(backbone, vocab, backbone.config)


_MODELS = {}


def tiny(family):
    """Each tiny model is built once per run (its compiled programs are kept with it)."""
    if family not in _MODELS:
        _MODELS[family] = build(family)
    return _MODELS[family]


def expected_turn(model, messages, enable_thinking=False, **sampling):
    """(prompt ids, answer ids) from plain ``generate_ids`` on the whole conversation as one prompt."""
    text = model.tokenizer.apply_chat_template(messages, enable_thinking=enable_thinking)
    prompt = model.tokenizer.encode(text, add_bos=True)
    return prompt, model.generate_ids([prompt], STEPS, **sampling)[0]


def test_power_of_two_pieces():
    assert power_of_two_pieces(37) == [32, 4, 1]
    assert power_of_two_pieces(64) == [64] and power_of_two_pieces(1) == [1] and power_of_two_pieces(0) == []


@pytest.mark.parametrize("family", ["gemma3", "griffin", "gemma4"])
def test_three_turns_match_generate_on_the_whole_conversation(family):
    model, (system, first) = tiny(family), FIRST[family]
    thinking = family == "gemma4"                                  # Gemma 4's system turn with <|think|>
    session = model.chat(system=system, max_length=MAX_LENGTH, enable_thinking=thinking)
    held, answer, end_of_turn = 0, [], "<end_of_turn>" if family != "gemma4" else "<turn|>"
    for message in [first] + MESSAGES:
        last_letter = model.tokenizer.decode(answer[-1:])
        prompt, answer = expected_turn(model, session.history + [{"role": "user", "content": message}], thinking)
        assert session.send(message, max_new_tokens=STEPS) == model.tokenizer.decode(answer)
        turn = session.last_turn
        assert (turn.new_tokens, turn.cached_tokens, turn.prompt_tokens) == (len(answer), held, len(prompt) - held)
        if held:                # turns 2 and 3 feed their own tokens only: the last answer's unfed letter, then
            assert turn.prompt_tokens == 33                        # the end of its turn and the new turn
            new_turn = model.tokenizer.apply_chat_template([{"role": "user", "content": message}])
            assert model.tokenizer.decode(prompt[held:]) == last_letter + end_of_turn + "\n" + new_turn
        # The cache holds the template's ids for the conversation (its last token sampled, not yet fed).
        whole = model.tokenizer.apply_chat_template(session.history, add_generation_prompt=False,
                                                    enable_thinking=thinking)
        assert session.cached_ids == model.tokenizer.encode(whole, add_bos=True)[:session.tokens_in_cache]
        assert session.cached_ids == prompt + answer[:-1]
        held = session.tokens_in_cache
    assert [m["role"] for m in session.history] == ["system"] * bool(system) + ["user", "model"] * 3
    session.reset()
    assert session.tokens_in_cache == 0 and session.history == [{"role": "system", "content": system}] * bool(system)


def test_the_cache_grows_by_powers_of_two_and_keeps_its_steps():
    """A turn that needs more than 256 slots grows the cache to 512, and the answer is still
    ``generate_ids``'s on the whole conversation (``grow``'s logits: the next test)."""
    model = tiny("gemma3")
    session = model.chat(system="be brief", max_length=512)
    session.send(FIRST["gemma3"][1], max_new_tokens=STEPS)
    assert session.cache_slots == 256 and "cache of 256 slots" in repr(session)
    messages = session.history + [{"role": "user", "content": MESSAGES[0]}]
    text = model.tokenizer.apply_chat_template(messages)
    prompt = model.tokenizer.encode(text, add_bos=True)
    long = 256 - len(prompt) + 8                                   # 8 tokens past the first cache
    answer = model.generate_ids([prompt], long)[0]
    assert session.send(MESSAGES[0], max_new_tokens=long) == model.tokenizer.decode(answer)
    assert session.cache_slots == 512 and session.last_turn.cached_tokens > 0


@pytest.mark.parametrize("family", ["gemma3", "gemma4"])
def test_a_grown_cache_gives_the_logits_of_one_made_big(family):
    """``grow``: steps written into a 256-slot cache, copied into 512 slots, then a chunk appended,
    give the logits a 512-slot cache gives; a cache that lost its steps would not."""
    from gemma_kit.compile import compile_model_function
    from gemma_kit.session import grow

    backbone = tiny(family).backbone
    extend = compile_model_function(backbone, lambda ids, time, caches: backbone.extend(
        ids, time, ops.zeros((1,), "int32"), caches, all_logits=True))      # -> (logits (1, seq, vocab), caches)
    rng = np.random.default_rng(0)
    prompt, chunk = rng.integers(10, 300, (1, 20)), rng.integers(10, 300, (1, 5))   # (1, 20), (1, 5)
    at_0, at_20 = ops.convert_to_tensor(np.int32(0)), ops.convert_to_tensor(np.int32(20))

    def logits_after(caches, grow_to=None, written=True):
        if written:
            caches = extend(ops.convert_to_tensor(prompt), at_0, caches)[1]
        if grow_to:
            caches = grow(caches, backbone.init_cache(1, grow_to))
        return ops.convert_to_numpy(extend(ops.convert_to_tensor(chunk), at_20, caches)[0])

    big = logits_after(backbone.init_cache(1, 512))
    np.testing.assert_allclose(logits_after(backbone.init_cache(1, 256), grow_to=512), big, atol=1e-4)
    forgotten = logits_after(backbone.init_cache(1, 512), written=False)
    assert np.abs(forgotten - big).max() > 1e-2                     # the steps matter to these logits


@pytest.mark.once
def test_the_26b_template_keeps_the_cache_up_to_its_empty_thought_channel():
    """Gemma 4 26B/31B: the generation prompt ends in an empty thought channel that the next turn's
    text no longer has; the session rolls back to its copy made just before that channel."""
    model = tiny("gemma4")
    model.tokenizer.chat_format = "gemma4_large"
    try:
        session, prompts = model.chat(max_length=MAX_LENGTH), []
        for message in ["what is the plan now", "and what then"]:        # the same pieces as above, and 8 + 1
            prompt, answer = expected_turn(model, session.history + [{"role": "user", "content": message}])
            assert session.send(message, max_new_tokens=STEPS) == model.tokenizer.decode(answer)
            assert session.cached_ids == prompt + answer[:-1]
            prompts.append(prompt)
        channel = model.tokenizer.encode("<|channel>thought\n<channel|>")
        assert prompts[0][-len(channel):] == channel
        assert session.last_turn.cached_tokens == len(prompts[0]) - len(channel)
    finally:
        model.tokenizer.chat_format = "gemma4"


def test_an_edited_history_rolls_the_cache_back_and_a_turn_too_long_changes_nothing():
    model = tiny("gemma3")
    session = model.chat(system="be brief", max_length=MAX_LENGTH)
    session.send("hi friend", max_new_tokens=STEPS)
    first = session.tokens_in_cache - STEPS + 1                    # the first turn's prompt: the copy's time
    session.history[-1]["content"] = "ok"                          # the last answer, rewritten
    prompt, answer = expected_turn(model, session.history + [{"role": "user", "content": "so what came next"}])
    assert session.send("so what came next", max_new_tokens=STEPS) == model.tokenizer.decode(answer)
    assert (session.last_turn.cached_tokens, session.last_turn.prompt_tokens) == (first, len(prompt) - first)
    assert session.cached_ids == prompt + answer[:-1]
    session.history[1]["content"] = "hey"                          # the first message: start over
    prompt, answer = expected_turn(model, session.history + [{"role": "user", "content": MESSAGES[1]}])
    assert session.send(MESSAGES[1], max_new_tokens=STEPS) == model.tokenizer.decode(answer)
    assert (session.last_turn.cached_tokens, session.last_turn.prompt_tokens) == (0, len(prompt))
    assert session.cached_ids == prompt + answer[:-1]

    history, held = [dict(m) for m in session.history], session.tokens_in_cache
    with pytest.raises(ValueError, match=rf"holds \d+ tokens .*max_length={MAX_LENGTH}.*new session.*larger max_length"):
        session.send("a" * 200, max_new_tokens=STEPS)
    assert session.history == history and session.tokens_in_cache == held        # nothing changed


def test_a_stream_stopped_early_and_a_sampled_turn():
    model = tiny("gemma3")
    session = model.chat(system="be brief", max_length=MAX_LENGTH)
    prompt, answer = expected_turn(model, session.history + [{"role": "user", "content": "hi friend"}])
    pieces = session.stream("hi friend", max_new_tokens=STEPS)
    assert next(pieces) + next(pieces) == model.tokenizer.decode(answer[:2])    # one letter a piece
    pieces.close()                                                 # the reader stops: the turn ends there
    assert session.history[-1] == {"role": "model", "content": model.tokenizer.decode(answer[:2])}
    assert session.tokens_in_cache == len(prompt) + 1              # the second letter was not fed
    # A sampled turn draws the same Gumbel noise as generate with the same seed: the same tokens.
    sampling = dict(sampler="top_k", top_k=5, temperature=2.0, seed=7)
    prompt, answer = expected_turn(model, session.history + [{"role": "user", "content": MESSAGES[0]}], **sampling)
    assert "".join(session.stream(MESSAGES[0], max_new_tokens=STEPS, **sampling)) == model.tokenizer.decode(answer)
    assert session.last_turn.prompt_tokens == 33


def test_bad_arguments_are_named():
    model = tiny("gemma3")
    with pytest.raises(ValueError, match="max_length"):
        model.chat(max_length=10**6)
    with pytest.raises(ValueError, match="max_length"):
        model.chat(max_length=0)
    with pytest.raises(TypeError, match="system"):
        model.chat(system=3)
    with pytest.raises(ValueError, match="enable_thinking"):
        model.chat(enable_thinking=True)                           # Gemma 3 has no thinking mode
    session = model.chat()
    with pytest.raises(TypeError, match="message"):
        session.send(["hi"])
    with pytest.raises(ValueError, match="message is empty"):
        session.send("  ")
    with pytest.raises(ValueError, match="max_new_tokens"):
        session.send("hi", max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        session.stream("hi", sampler="temperature", temperature=0.0)
    with pytest.raises(ValueError, match="thoughts"):
        session.send("hi", thoughts="maybe")
    assert session.history == [] and session.tokens_in_cache == 0
