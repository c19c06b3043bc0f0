"""The Gemma tokenizer: text <-> token ids, built on SentencePiece.

How Gemma turns text into ids
-----------------------------
Gemma uses a SentencePiece model of type BPE (byte-pair encoding):

1. Normalization is the identity, except that every space becomes "▁" (U+2581),
   so a word and its leading space form one piece ("▁world"). No space is added
   at the start (no "dummy prefix") and runs of spaces are kept as they are.
2. "User-defined" pieces -- `<start_of_turn>`, `<end_of_turn>`, runs of spaces,
   tabs and newlines, some HTML tags, `<unused0>`... -- are cut out first, whole,
   longest match first. They never merge with their neighbours.
3. Everything else starts as single characters, and BPE repeatedly merges the
   adjacent pair whose concatenation is the best-scoring piece in the vocabulary.
   (Digits were split during training, so numbers come out one digit a token.)
4. Byte fallback: a character that is not in the vocabulary at all (a rare
   emoji, a control character) is written as its UTF-8 bytes, one piece per byte
   (`<0xF0>`, `<0x9F>`, ...). So no text is ever "unknown", but one character may
   take up to four tokens, and a token may hold *part* of a character: see
   `StreamingDecoder`.

Only `<pad>`, `<eos>` and `<bos>` are "control" pieces: text can never produce
them (the text "<bos>" is just "<", "bos", ">"), so a prompt cannot forge them.
The BOS id is added by the caller: `encode(text, add_bos=True)`.

Where the vocabulary comes from
-------------------------------
A GGUF file carries the vocabulary in its metadata (`tokenizer.ggml.tokens`,
`.scores`, `.token_type`, special ids). `from_gguf_metadata` rebuilds the
SentencePiece `ModelProto` from it and undoes two changes llama.cpp's converter
made: it marks every "special" added token CONTROL (the original model has only
pad/eos/bos as control; `<start_of_turn>` and the others are user-defined), and it
writes spaces inside user-defined pieces as " " instead of "▁". With that the
rebuilt model has the same piece types as Google's own `tokenizer.model`
(3 control, 1 unknown, 6410 user-defined, 256 byte pieces for Gemma 3).
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Mapping, Sequence

import sentencepiece
from google.protobuf.message import DecodeError
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from .chat import CHAT_FORMATS

_Piece = sp_pb2.ModelProto.SentencePiece
SPACE = "\u2581"  # "▁", SentencePiece's visible space

# llama.cpp token_type codes -> SentencePiece piece types.
_GGUF_TYPES = {1: _Piece.NORMAL, 2: _Piece.UNKNOWN, 3: _Piece.CONTROL,
               4: _Piece.USER_DEFINED, 5: _Piece.UNUSED, 6: _Piece.BYTE}

_K = "tokenizer.ggml."
_REQUIRED = ("model", "tokens", "scores", "token_type", "bos_token_id",
             "eos_token_id", "unknown_token_id", "padding_token_id")


def _as_list(value) -> list:
    return value.tolist() if hasattr(value, "tolist") else list(value)


def build_model_proto(metadata: Mapping) -> sp_pb2.ModelProto:
    """A SentencePiece `ModelProto` from GGUF tokenizer metadata (see module doc)."""
    for name in _REQUIRED:
        if _K + name not in metadata:
            raise ValueError(f"GGUF metadata has no '{_K}{name}': cannot build the tokenizer")
    if metadata[_K + "model"] != "llama":
        raise ValueError(f"'{_K}model' is {metadata[_K + 'model']!r}: only SentencePiece "
                         "vocabularies ('llama') are supported")
    tokens = _as_list(metadata[_K + "tokens"])
    scores = _as_list(metadata[_K + "scores"])
    types = _as_list(metadata[_K + "token_type"])
    if not len(tokens) == len(scores) == len(types):
        raise ValueError(f"GGUF tokenizer arrays differ in length: {len(tokens)} tokens, "
                         f"{len(scores)} scores, {len(types)} token types")
    ids = {name: int(metadata[_K + f"{name}_token_id"])
           for name in ("bos", "eos", "unknown", "padding")}
    for name, i in ids.items():
        if not 0 <= i < len(tokens):
            raise ValueError(f"'{_K}{name}_token_id' = {i} is outside the vocabulary")
    control = {ids["bos"], ids["eos"], ids["padding"]}

    proto = sp_pb2.ModelProto()
    for i, (token, score, gguf_type) in enumerate(zip(tokens, scores, types)):
        kind = _GGUF_TYPES.get(int(gguf_type))
        if kind is None:
            raise ValueError(f"token {i} {token!r} has unknown token_type {gguf_type}")
        if i == ids["unknown"]:
            kind = _Piece.UNKNOWN
        elif kind == _Piece.CONTROL and i not in control:
            kind = _Piece.USER_DEFINED  # llama.cpp's "special" added token
        elif kind == _Piece.UNKNOWN:
            kind = _Piece.USER_DEFINED  # only one piece may be the unknown piece
        if kind == _Piece.USER_DEFINED:
            token = token.replace(" ", SPACE)  # llama.cpp stored "▁▁" as "  "
        # Only normal pieces use their score: it is the merge priority of BPE.
        proto.pieces.add(piece=token, type=kind,
                         score=float(score) if kind == _Piece.NORMAL else 0.0)

    spec = proto.trainer_spec
    spec.model_type = sp_pb2.TrainerSpec.BPE
    spec.vocab_size = len(tokens)
    spec.byte_fallback = any(p.type == _Piece.BYTE for p in proto.pieces)
    spec.split_digits = True  # a training option: recorded, no effect on encoding
    spec.allow_whitespace_only_pieces = True
    for name, field in (("unknown", "unk"), ("bos", "bos"), ("eos", "eos"), ("padding", "pad")):
        setattr(spec, f"{field}_id", ids[name])
        setattr(spec, f"{field}_piece", proto.pieces[ids[name]].piece)
    norm = proto.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = bool(metadata.get(_K + "add_space_prefix", True))
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    return proto


class GemmaTokenizer:
    """Gemma's SentencePiece tokenizer. Build it with `from_gguf_metadata` or `from_file`."""

    chat_format = "gemma3"  # how apply_chat_template writes a conversation: a key of CHAT_FORMATS

    def __init__(self, proto: sp_pb2.ModelProto):
        self.model_proto = proto
        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(proto.SerializeToString())
        except RuntimeError as e:  # e.g. a piece defined twice, no unknown piece
            raise ValueError(f"SentencePiece rejected the vocabulary: {e}") from e
        self._special = {p.piece: i for i, p in enumerate(proto.pieces)
                         if p.type in (_Piece.CONTROL, _Piece.UNKNOWN, _Piece.USER_DEFINED)}

    @classmethod
    def from_gguf_metadata(cls, metadata: Mapping) -> GemmaTokenizer:
        return cls(build_model_proto(metadata))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> GemmaTokenizer:
        """Load a SentencePiece `tokenizer.model` file."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"SentencePiece model file not found: {path}")
        with open(path, "rb") as f:
            data = f.read()
        proto = sp_pb2.ModelProto()
        try:
            proto.ParseFromString(data)
            if not proto.pieces:
                raise ValueError("no pieces")
            return cls(proto)
        except (DecodeError, ValueError) as e:
            raise ValueError(f"{path} is not a valid SentencePiece model ({e})") from e

    def save(self, path: str | os.PathLike) -> None:
        """Write the model as a `tokenizer.model` file that SentencePiece can load."""
        with open(path, "wb") as f:
            f.write(self.model_proto.SerializeToString())

    # --- ids and pieces -------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    @property
    def pad_id(self) -> int:
        return self._sp.pad_id()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    @property
    def special_ids(self) -> dict[str, int]:
        """Control, unknown and user-defined pieces by name, e.g. `{"<end_of_turn>": 106, ...}`."""
        return dict(self._special)

    def special_token_id(self, name: str) -> int:
        if name not in self._special:
            raise ValueError(f"{name!r} is not a special token of this vocabulary")
        return self._special[name]

    def token_to_id(self, piece: str) -> int:
        i = self._sp.piece_to_id(piece)
        if self._sp.id_to_piece(i) != piece:  # unknown pieces map to unk_id
            raise ValueError(f"{piece!r} is not a piece of the vocabulary")
        return i

    def id_to_token(self, token_id: int) -> str:
        self._check_id(token_id)
        return self._sp.id_to_piece(int(token_id))

    def _check_id(self, token_id: int) -> None:
        if not 0 <= int(token_id) < self.vocab_size:
            raise IndexError(f"token id {token_id} is outside the vocabulary "
                             f"[0, {self.vocab_size})")

    # --- text -----------------------------------------------------------------
    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids for `text`; with `add_bos=True` the BOS id comes first."""
        ids = self._sp.encode(text, out_type=int)
        return [self.bos_id, *ids] if add_bos else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text for `ids`; BOS, EOS and PAD render as nothing."""
        ids = [int(i) for i in ids]
        for i in ids:
            self._check_id(i)
        return self._sp.decode(ids)

    def piece_surface(self, token_id: int) -> str | int:
        """What one token contributes to the text: a str, or an int for a byte piece."""
        self._check_id(token_id)
        sp = self._sp
        if sp.is_byte(token_id):
            return int(sp.id_to_piece(token_id)[3:5], 16)  # "<0xE4>" -> 0xE4
        if sp.is_control(token_id):
            return ""
        if sp.is_unknown(token_id):
            return sp.decode([token_id])
        return sp.id_to_piece(token_id).replace(SPACE, " ")

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]],
                            add_generation_prompt: bool = True,
                            enable_thinking: bool = False) -> str:
        """The conversation as text, in the chat format `self.chat_format` (see `chat.py`).

        "gemma3" (Gemma 1-3, the default), "gemma4" (E2B, E4B) or "gemma4_large" (26B-A4B,
        31B). `gemma_kit.load` sets it from the model's config. The text has no "<bos>":
        encode it with `add_bos=True`. `enable_thinking` turns on Gemma 4's thinking mode.
        """
        chat_format = getattr(self, "chat_format", "gemma3")  # JsonTokenizer borrows this method
        if chat_format not in CHAT_FORMATS:
            raise ValueError(f"unknown chat format {chat_format!r}; expected one of "
                             f"{sorted(CHAT_FORMATS)}")
        if chat_format == "gemma3":
            if enable_thinking:
                raise ValueError("enable_thinking=True: Gemma 1-3 have no thinking mode "
                                 "(it is a Gemma 4 chat format feature)")
            return CHAT_FORMATS["gemma3"](messages, add_generation_prompt)
        return CHAT_FORMATS[chat_format](messages, add_generation_prompt,
                                         enable_thinking=enable_thinking)


class StreamingDecoder:
    """Turns token ids, fed one at a time, into text as soon as it is complete.

    A byte-fallback token may hold part of a character ("你" can be
    `<0xE4><0xBD><0xA0>`): its bytes wait in an incremental UTF-8 decoder until
    the character is whole. `push(id)` returns the new text (maybe ""); `flush()`
    returns what is left at the end (a broken byte sequence becomes "\ufffd").
    """

    def __init__(self, tokenizer: GemmaTokenizer):
        self.tokenizer = tokenizer
        self._bytes = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # Without a dummy prefix (Gemma) the first space is real text and stays.
        self._strip_space = tokenizer.model_proto.normalizer_spec.add_dummy_prefix
        self._started = False

    def push(self, token_id: int) -> str:
        surface = self.tokenizer.piece_surface(token_id)
        if isinstance(surface, int):
            return self._emit(self._bytes.decode(bytes([surface])))
        return self._emit(self._bytes.decode(b"", final=True) + surface)

    def flush(self) -> str:
        return self._emit(self._bytes.decode(b"", final=True))

    def pieces(self, token_ids):
        """Yield the non-empty text pieces of a stream of token ids, the flushed tail last."""
        for token_id in token_ids:
            piece = self.push(token_id)
            if piece:
                yield piece
        tail = self.flush()
        if tail:
            yield tail

    def _emit(self, text: str) -> str:
        if text and not self._started:
            self._started = True
            if self._strip_space and text.startswith(" "):
                text = text[1:]
        return text
