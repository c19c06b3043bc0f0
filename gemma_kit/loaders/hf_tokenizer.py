"""The tokenizer of a Hugging Face folder: ``tokenizer.model``, else ``tokenizer.json``, else none.

``tokenizer.model`` is Google's SentencePiece model: we load it with ``GemmaTokenizer``.

``tokenizer.json`` is the `tokenizers` library's format. For Gemma it is a BPE model
converted from the SentencePiece one: the vocabulary and a list of *merges*, but not the
SentencePiece scores nor which pieces are "control" and which are "user-defined". Rebuilding
the SentencePiece model from it would mean guessing those, so we do not: ``JsonTokenizer``
runs the file with the `tokenizers` library itself (what transformers does) to encode, behind
the interface of ``GemmaTokenizer`` (``encode``, ``decode``, ``bos_id``, ``token_to_id``, ...).
Decoding goes piece by piece as ``GemmaTokenizer`` does it (the library would turn every byte
of a broken UTF-8 sequence into U+FFFD, even the valid ones, and show ``<unk>``).

With neither file, ``NoTokenizer`` stands in: ``model.logits(ids)`` works, and anything that
needs text (``generate``, ``stream``) stops with a ``NoTokenizerError`` that says what is missing.
"""

from __future__ import annotations

import json
import os
import re
from types import SimpleNamespace

from ..tokenizer import SPACE, GemmaTokenizer

_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class JsonTokenizer:
    """A ``tokenizer.json`` (run by the `tokenizers` library) with ``GemmaTokenizer``'s interface."""

    # What depends only on the ids and names, not on the engine, is GemmaTokenizer's own code.
    apply_chat_template = GemmaTokenizer.apply_chat_template   # the same Gemma chat format
    special_ids = GemmaTokenizer.special_ids                   # self._special: {piece: id}
    special_token_id = GemmaTokenizer.special_token_id
    _check_id = GemmaTokenizer._check_id                       # needs self.vocab_size

    def __init__(self, path: str, special_tokens: dict | None = None):
        from tokenizers import Tokenizer

        self.path = os.fspath(path)
        try:
            self._tok = Tokenizer.from_file(self.path)
        except Exception as error:    # the library raises a bare Exception for a malformed file
            raise ValueError(f"{self.path}: not a readable tokenizer.json ({error})") from error
        names = {"bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": "<unk>", **(special_tokens or {})}
        self._ids = {}
        for role, piece in names.items():
            token_id = self._tok.token_to_id(piece)
            if token_id is None:
                raise ValueError(f"{self.path}: the {role} token {piece!r} is not in the vocabulary")
            self._ids[role] = token_id
        self._control = {self._ids["bos"], self._ids["eos"], self._ids["pad"]}
        self._special = {t.content: i for i, t in self._tok.get_added_tokens_decoder().items()}
        # StreamingDecoder asks whether a space was added in front of the text (SentencePiece's
        # "dummy prefix"): Gemma's tokenizer.json has no Prepend normalizer, so no.
        normalizer = self._tok.normalizer.__getstate__().decode() if self._tok.normalizer else ""
        self.model_proto = SimpleNamespace(normalizer_spec=SimpleNamespace(
            add_dummy_prefix='"Prepend"' in normalizer))

    @classmethod
    def from_folder(cls, folder: str) -> "JsonTokenizer":
        """``folder/tokenizer.json``, with the special tokens ``tokenizer_config.json`` names, if any."""
        special = {}
        config_path = os.path.join(folder, "tokenizer_config.json")
        if os.path.isfile(config_path):
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
            for role in ("bos", "eos", "pad", "unk"):
                value = config.get(f"{role}_token")
                value = value.get("content") if isinstance(value, dict) else value
                if isinstance(value, str):
                    special[role] = value
        return cls(os.path.join(folder, "tokenizer.json"), special)

    def save(self, path) -> None:
        """Write the ``tokenizer.json`` file."""
        self._tok.save(os.fspath(path))

    # --- ids and pieces -------------------------------------------------------
    vocab_size = property(lambda self: self._tok.get_vocab_size(with_added_tokens=True))
    bos_id = property(lambda self: self._ids["bos"])
    eos_id = property(lambda self: self._ids["eos"])
    pad_id = property(lambda self: self._ids["pad"])
    unk_id = property(lambda self: self._ids["unk"])

    def token_to_id(self, piece: str) -> int:
        token_id = self._tok.token_to_id(piece)
        if token_id is None:
            raise ValueError(f"{piece!r} is not a piece of the vocabulary")
        return token_id

    def id_to_token(self, token_id: int) -> str:
        self._check_id(token_id)
        return self._tok.id_to_token(int(token_id))

    # --- text -----------------------------------------------------------------
    def encode(self, text: str, add_bos: bool = False) -> list:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids] if add_bos else ids

    def decode(self, ids) -> str:
        """Text for ``ids``, piece by piece as ``GemmaTokenizer`` streams it: BOS, EOS and PAD render as
        nothing, byte pieces are joined into UTF-8 (a broken sequence becomes U+FFFD), so that
        ``generate`` and ``stream`` give the same text."""
        from ..tokenizer import StreamingDecoder

        decoder = StreamingDecoder(self)
        return "".join(decoder.push(int(i)) for i in ids) + decoder.flush()

    def piece_surface(self, token_id: int):
        """What one token adds to the text: a str, or an int for a byte-fallback piece."""
        piece = self.id_to_token(token_id)
        byte = _BYTE.fullmatch(piece)
        if byte:
            return int(byte.group(1), 16)
        if int(token_id) == self.unk_id:
            return " \u2047 "                      # SentencePiece writes the unknown piece as " ⁇ "
        return "" if int(token_id) in self._control else piece.replace(SPACE, " ")


class NoTokenizerError(ValueError):
    """Text was asked of a model loaded without a tokenizer file."""


class NoTokenizer:
    """Stands in when a checkpoint has no tokenizer file: falsy, and every use says what is missing.

    (``generate_ids`` still works on token ids: without a vocabulary it knows no stop token.)
    """

    def __init__(self, folder: str):
        self.folder = folder

    def __bool__(self):
        return False

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise NoTokenizerError(f"{self.folder} has no tokenizer (neither tokenizer.model nor tokenizer.json): "
                           f"model.logits(token_ids) works, but turning text into tokens (tokenizer.{name}) "
                           "needs one; copy the model's tokenizer.model into that folder")

    def __repr__(self):
        return f"NoTokenizer({self.folder!r})"


def load_hf_tokenizer(folder: str):
    """GemmaTokenizer from tokenizer.model, else JsonTokenizer from tokenizer.json, else NoTokenizer."""
    if os.path.isfile(os.path.join(folder, "tokenizer.model")):
        return GemmaTokenizer.from_file(os.path.join(folder, "tokenizer.model"))
    if os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return JsonTokenizer.from_folder(folder)
    return NoTokenizer(folder)
