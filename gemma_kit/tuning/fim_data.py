"""Fill-in-the-middle training data: cut code into prefix / middle / suffix, and format it for ``fit``.

The FIM transformation of Bavarian et al. (2022, arXiv:2207.14255), as CodeGemma was trained:
a document is cut in three and the middle is moved to the end, behind marker tokens::

    <bos>{P}{prefix}{S}{suffix}{M}{middle}{E}      P, S, M, E: the prefix, suffix, middle and end markers
    |------------ prompt: no loss ----------||loss-|
    <bos>{P}{S}{suffix}{M}{prefix}{middle}{E}      the same in suffix-prefix-middle order (``order="spm"``)

Two ways to cut (both keep ``prefix + middle + suffix == source`` exactly):

- ``split_line``: the middle is one line of code without its indentation; the indentation stays at the
  end of the prefix and the newline starts the suffix. This is what an editor asks at a cursor placed
  on an empty, already indented line.
- ``split_random``: two random character positions (the paper's "random span"), here with the middle
  at most ``max_middle`` characters, so that it can start and end inside a name.

``format_fim_examples`` turns ``{"prefix", "middle", "suffix"}`` records into the same arrays as
``format_examples`` (data.py) with ``response_length``: the loss is on the middle and on the end
marker, so the model learns to stop; ``ResponseLM`` (train.py) trains on them unchanged.
"""

from __future__ import annotations

import random

from .data import fits, format_examples


def split_line(source: str, line_index: int) -> dict:
    """``{"prefix", "middle", "suffix"}``: line ``line_index`` (0-based) of ``source`` is the middle."""
    lines = source.splitlines(keepends=True)
    if not 0 <= line_index < len(lines):
        raise ValueError(f"line_index {line_index} is outside the source's {len(lines)} lines")
    line = lines[line_index]
    body = line.rstrip("\r\n")
    indent = body[:len(body) - len(body.lstrip())]
    if not body.strip():
        raise ValueError(f"line {line_index} is empty: there is nothing to fill in")
    return {"prefix": "".join(lines[:line_index]) + indent,
            "middle": body[len(indent):],
            "suffix": line[len(body):] + "".join(lines[line_index + 1:])}


def split_random(source: str, rng: random.Random, max_middle: int = 80) -> dict:
    """``{"prefix", "middle", "suffix"}`` cut at two random character positions (middle 1..max_middle chars)."""
    if len(source) < 2:
        raise ValueError(f"the source has {len(source)} characters: too short to cut in three")
    length = rng.randint(1, min(max_middle, len(source) - 1))       # characters in the middle
    start = rng.randint(0, len(source) - length)
    return {"prefix": source[:start], "middle": source[start:start + length], "suffix": source[start + length:]}


def encode_fim_example(tokenizer, example: dict, markers: dict, n: int = 0, order: str = "psm"):
    """(prompt ids: ``<bos>`` + the FIM prompt in ``order``, response ids: the middle + the end marker)."""
    from ..fim import fim_prompt

    if not isinstance(example, dict) or not all(isinstance(example.get(k), str) for k in ("prefix", "middle", "suffix")):
        raise ValueError(f"example {n}: expected a dict with string fields 'prefix', 'middle' and 'suffix', got "
                         f"{sorted(example) if isinstance(example, dict) else type(example).__name__}")
    prompt = fim_prompt(example["prefix"], example["suffix"], markers, order)
    prompt_ids = [tokenizer.bos_id] + tokenizer.encode(prompt)
    return prompt_ids, tokenizer.encode(example["middle"]) + [tokenizer.token_to_id(markers["end"])]


def fits_fim(tokenizer, example, markers, sequence_length: int, response_length: int, order: str = "psm") -> bool:
    """Whether the example fits in ``sequence_length`` tokens and its middle (end marker included) in ``response_length``."""
    return fits(tokenizer, example, sequence_length, response_length, encode=_encoder(markers, order))


def format_fim_examples(tokenizer, examples, markers: dict, sequence_length: int, response_length: int,
                        order: str = "psm") -> dict:
    """``{"x": {"token_ids", "padding_mask", "target_positions"}, "y", "sample_weight"}`` for ``ResponseLM``.

    ``format_examples`` (data.py) with the FIM prompt instead of the chat turn: ``x`` arrays are
    (n, sequence_length); ``y``, ``sample_weight`` and ``target_positions`` are (n, response_length),
    the targets being the middle's tokens and the end marker. An example that does not fit is an
    error naming it (filter with ``fits_fim`` first).
    """
    return format_examples(tokenizer, examples, sequence_length, response_length, encode=_encoder(markers, order))


def _encoder(markers: dict, order: str):
    """``encode_fim_example`` with ``markers`` and ``order`` fixed: the ``encode`` that ``format_examples`` calls."""
    return lambda tokenizer, example, n: encode_fim_example(tokenizer, example, markers, n, order)
