"""gemma_kit.chat against the official Gemma 4 chat template, rendered by transformers.

``tests/data/gemma4_chat_template.jinja`` is google/gemma-4-E2B-it's (and -E4B-it's)
``chat_template.jinja``, byte for byte (provenance in ``gemma4_chat_template.md``). The
26B-A4B / 31B template is the same file plus two edits, applied and checked by hash below.
Each conversation is rendered by ``PreTrainedTokenizerFast.apply_chat_template``, the
path ``AutoTokenizer`` takes, and must equal "<bos>" + ``gemma4_chat(...)``.
"""

import hashlib
import os
from types import SimpleNamespace

import pytest

from gemma_kit.chat import CHAT_FORMATS, gemma3_chat, gemma4_chat, split_thoughts
from gemma_kit.tokenizer import GemmaTokenizer

DATA = os.path.join(os.path.dirname(__file__), "data")
SMALL_SHA256 = "0a2c8073c878ab1da004bee933a998606537bbb62016310352c7285c3f01c5b5"  # E2B-it, E4B-it
LARGE_SHA256 = "ae53464bf3be25802b3a5b37def7fd89667067d7577049b3b2d74c4d8de4c6d4"  # 26B-A4B-it, 31B-it


def _read_template():
    with open(os.path.join(DATA, "gemma4_chat_template.jinja"), "rb") as f:
        return f.read()


def _large_template(small: str) -> str:
    """The 26B-A4B / 31B template: a blank line after the turn opener, an empty thought in the prompt."""
    opener = "        {{- '<|turn>' + role + '\\n' }}\n"
    prompt = "        {{- '<|turn>model\\n' -}}\n"
    empty_thought = ("        {%- if not enable_thinking -%}\n"
                     "            {{- '<|channel>thought\\n<channel|>' -}}\n"
                     "        {%- endif -%}\n")
    assert small.count(opener) == 1 and small.count(prompt) == 1
    return small.replace(opener, opener + "\n").replace(prompt, prompt + empty_thought)


def _hf(template):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = Tokenizer(models.WordLevel({"<bos>": 0, "<eos>": 1, "<unk>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=vocab, bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>", chat_template=template)


@pytest.fixture(scope="module")
def small():
    return _hf(_read_template().decode("utf-8"))


@pytest.fixture(scope="module")
def large():
    return _hf(_large_template(_read_template().decode("utf-8")))


def U(text, **extra):
    return {"role": "user", "content": text, **extra}


def A(text, role="assistant", **extra):
    return {"role": role, "content": text, **extra}


def S(text, **extra):
    return {"role": "system", "content": text, **extra}


THOUGHT = "<|channel>thought\nThe user wants a sum. 2+2=4.<channel|>"
CONVERSATIONS = [
    [U("Hello")],
    [S("You are terse."), U("2+2?")],
    [S("You are terse."), U("2+2?"), A("4"), U("And 3+3?")],
    [U("Hi!"), A("Hello. How can I help?"), U("A joke?"), A("Why did the chicken cross the road?")],
    [U("2+2?"), A(THOUGHT + "It is 4."), U("Sure?")],                      # thoughts in history
    [U("2+2?"), A(THOUGHT + "\n\nIt is 4.\n", role="model"), U("Sure?"), A(THOUGHT + " Yes.")],
    [U("q"), A("Sure.<|channel>thought\nunterminated")],                   # unclosed channel
    [U("q"), A("a<|channel>thought\nx<channel|>b<|channel>thought\ny<channel|>c")],
    [U("q"), A("<channel|>stray close<channel|>")],
    [S("Réponds en français. 你好"), U("你好 👋 — ça va ? مرحبا"), A("Ça va, merci ! 🙂")],
    [S(" \n  padded system \t\n"), U("  Tell me a joke.\n"), A("\n  Joke.  \n"), U("\t?\t")],
    [U(""), A("   "), U(" ")],                                              # empty and blank contents
    [U("Line 1\nLine 2\n\nLine 4")],
    [U("2+2?"), A("4", reasoning="Two plus two.")],                         # shown: after the last user
    [U("2+2?"), A("4", reasoning="Two plus two."), U("And 3+3?")],          # dropped: a user follows
    [U("2+2?"), A("4", thinking="what transformers' parser calls it")],
    [U("2+2?"), A("4", reasoning_content="  spaced thought  ")],
    [U("2+2?"), A("4", reasoning=None, thinking="t"), A("5", reasoning="", reasoning_content="r")],
    [U("Count."), A("One,"), A(" two,"), A(" three.")],                     # "assistant" runs merge
    [U("Count."), A("One", role="model"), A("two", role="model")],          # "model" runs do not
    [U("x"), A("a"), A("b", role="model"), U("y"), A("c", role="model"), A("d")],
    [U("Hi"), S("Now answer in French."), U("Bonjour ?")],                  # a later system turn
    [S("Only a system prompt.")],
    [A("I start."), U("Fine.")],
    [U("user text keeps <|channel>thought\nthis<channel|> and <turn|> as written")],
    [S("sys", reasoning="never shown"), U("q"), S("late", reasoning="shown")],
]
OPTIONS = [dict(add_generation_prompt=g, enable_thinking=t) for g in (True, False) for t in (False, True)]


def test_stored_template_is_the_official_file():
    data = _read_template()
    assert hashlib.sha256(data).hexdigest() == SMALL_SHA256
    large = _large_template(data.decode("utf-8")).encode("utf-8")
    assert hashlib.sha256(large).hexdigest() == LARGE_SHA256


def test_enough_conversations():
    assert len(CONVERSATIONS) >= 20


@pytest.mark.parametrize("n", range(len(CONVERSATIONS)))
def test_gemma4_chat_matches_official_template(small, large, n):
    conversation = CONVERSATIONS[n]
    for options in OPTIONS:
        expected = small.apply_chat_template(conversation, tokenize=False, **options)
        assert expected.startswith("<bos>")          # we leave BOS to encode(add_bos=True)
        assert gemma4_chat(conversation, **options) == expected[len("<bos>"):], options
        expected = large.apply_chat_template(conversation, tokenize=False, **options)
        assert gemma4_chat(conversation, **options, empty_thought=True) == expected[len("<bos>"):]
    # Leaving enable_thinking out is the same as False.
    default = small.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert gemma4_chat(conversation) == default[len("<bos>"):]


def test_empty_conversation_matches_template():
    from transformers.utils.chat_template_utils import render_jinja_template

    template = _read_template().decode("utf-8")
    for thinking in (False, True):
        (expected,), _ = render_jinja_template([[]], chat_template=template, add_generation_prompt=True,
                                               bos_token="<bos>", enable_thinking=thinking)
        assert gemma4_chat([], enable_thinking=thinking) == expected[len("<bos>"):]


def test_gemma4_literal():
    text = gemma4_chat([S(" Be brief. "), U("2+2?"), A(THOUGHT + "4"), U("3+3?")], enable_thinking=True)
    assert text == ("<|turn>system\n<|think|>\nBe brief.<turn|>\n"
                    "<|turn>user\n2+2?<turn|>\n"
                    "<|turn>model\n4<turn|>\n"                 # the earlier thought is cut out
                    "<|turn>user\n3+3?<turn|>\n"
                    "<|turn>model\n")
    assert gemma4_chat([U("Hi")]) == "<|turn>user\nHi<turn|>\n<|turn>model\n"
    assert gemma4_chat([U("Hi")], empty_thought=True).endswith("<|turn>model\n<|channel>thought\n<channel|>")
    assert gemma4_chat([U("Hi")], enable_thinking=True, empty_thought=True).endswith("<|turn>model\n")


def test_gemma3_chat_literal():
    text = gemma3_chat([S("Be brief."), U(" Hi "), A("Hello")], add_generation_prompt=False)
    assert text == "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
    assert CHAT_FORMATS["gemma3"] is gemma3_chat and CHAT_FORMATS["gemma4"] is gemma4_chat
    # 26B-A4B and 31B: the same template, closing an empty thought channel when thinking is off.
    assert CHAT_FORMATS["gemma4_large"]([U("Hi")]) == gemma4_chat([U("Hi")], empty_thought=True)


@pytest.mark.parametrize("generated, thoughts, answer", [
    ("<|channel>thought\nLet me add.<channel|>4<turn|>", "Let me add.", "4"),
    ("<|channel>thought\nLet me add.\n<channel|>\n4\n", "Let me add.", "4"),
    ("Just 4.", "", "Just 4."),
    ("  Just 4. <turn|>", "", "Just 4."),
    ("<|channel>thought\n<channel|>4", "", "4"),                 # the empty thought channel
    ("<|channel>thought\nStill thinking about", "Still thinking about", ""),   # stopped mid-thought
    ("<|channel>thought", "", ""),
    ("<|channel>", "", ""),
    ("I opened in the prompt.<channel|>4", "I opened in the prompt.", "4"),
    ("<|channel>thought\na<channel|>b<|channel>thought\nc<channel|>d", "a\nc", "bd"),
    ("", "", ""),
    ("<|channel>thought\n思考 🤔<channel|>答え", "思考 🤔", "答え"),
])
def test_split_thoughts(generated, thoughts, answer):
    assert split_thoughts(generated) == (thoughts, answer)


def test_split_thoughts_round_trip(small):
    generated = "<|channel>thought\nTwo and two.<channel|>It is 4.<turn|>"
    thoughts, answer = split_thoughts(generated)
    as_content = [U("2+2?"), A(generated.removesuffix("<turn|>")), U("Sure?")]
    as_fields = [U("2+2?"), A(answer, reasoning=thoughts), U("Sure?")]
    assert gemma4_chat(as_content) == gemma4_chat(as_fields)
    assert "<bos>" + gemma4_chat(as_content) == small.apply_chat_template(as_content, tokenize=False,
                                                                          add_generation_prompt=True)


def test_gemma4_errors():
    with pytest.raises(TypeError, match="message 2: content must be a str, got list"):
        gemma4_chat([S("s"), U("a"), U([{"type": "text", "text": "b"}])])
    with pytest.raises(TypeError, match="message 0: content must be a str, got NoneType"):
        gemma4_chat([U(None)])
    with pytest.raises(ValueError, match="message 1: unknown role 'tool'"):
        gemma4_chat([U("a"), {"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="message 0: unknown role None"):
        gemma4_chat([{"content": "x"}])
    with pytest.raises(ValueError, match="message 1: tool calls are not supported"):
        gemma4_chat([U("a"), A("", tool_calls=[{"function": {"name": "f", "arguments": {}}}])])
    with pytest.raises(TypeError, match="message 1: reasoning must be a str"):
        gemma4_chat([U("a"), A("b", reasoning=["x"])])


def test_tokenizer_dispatch():
    assert GemmaTokenizer.chat_format == "gemma3"
    chat = [S("Be brief."), U("Hi")]
    apply = GemmaTokenizer.apply_chat_template          # JsonTokenizer borrows this very function
    assert apply(SimpleNamespace(), chat) == gemma3_chat(chat)   # no chat_format attribute: Gemma 3
    assert apply(SimpleNamespace(chat_format="gemma3"), chat, False) == gemma3_chat(chat, False)
    gemma4 = SimpleNamespace(chat_format="gemma4")
    assert apply(gemma4, chat) == gemma4_chat(chat)
    assert apply(gemma4, chat, enable_thinking=True) == gemma4_chat(chat, enable_thinking=True)
    assert apply(gemma4, chat, False, True) == gemma4_chat(chat, False, True)
    with pytest.raises(ValueError, match="Gemma 1-3 have no thinking mode"):
        apply(SimpleNamespace(chat_format="gemma3"), chat, enable_thinking=True)
    with pytest.raises(ValueError, match="unknown chat format 'chatml'"):
        apply(SimpleNamespace(chat_format="chatml"), chat)


def test_json_tokenizer_borrows_dispatching_method():
    from gemma_kit.loaders.hf_tokenizer import JsonTokenizer

    assert JsonTokenizer.apply_chat_template is GemmaTokenizer.apply_chat_template
