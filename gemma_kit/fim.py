"""Fill-in-the-middle (FIM): let a code model write the missing part of a file.

A left-to-right language model only continues text. To complete code *inside*
a file, where the code after the cursor matters too, CodeGemma was trained
with the fill-in-the-middle transformation of Bavarian et al. (2022),
"Efficient Training of Language Models to Fill in the Middle"
(arXiv:2207.14255): cut a training document into ``prefix``, ``middle`` and
``suffix``, and move the middle to the end, behind marker tokens:

    <|fim_prefix|>{before}<|fim_suffix|>{after}<|fim_middle|>{middle}<|file_separator|>

The model still reads left to right, but by the time it writes the middle it
has already seen both sides of the hole. At inference time we give it
everything up to ``<|fim_middle|>`` and let it generate; it ends the middle
with ``<|file_separator|>`` (or another FIM token), and we keep only the text
it wrote before that.

The four markers are ordinary vocabulary entries of CodeGemma (ids 67 prefix,
68 middle, 69 suffix, 70 file separator), "user-defined" pieces that the
tokenizer matches as whole tokens inside the text. Gemma 1, 2 and 3 were not
trained this way, and ``complete`` refuses a model whose vocabulary lacks them.

    model = gemma_kit.load(gemma_kit.presets.preset_handle("code_gemma_2b_en"))
    model.complete("def add(a, b):\\n    return ", "\\n\\nprint(add(1, 2))\\n")   # -> "a + b"
"""

from __future__ import annotations

from typing import Dict

FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
FILE_SEPARATOR = "<|file_separator|>"

FIM_TOKENS = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FILE_SEPARATOR)   # CodeGemma ids 67, 68, 69, 70
# The middle is over when the model writes any FIM marker, a file separator or <eos>.
STOP_TOKENS = FIM_TOKENS + ("<eos>",)


def fim_prompt(before: str, after: str) -> str:
    """The prompt that asks for the text between ``before`` and ``after`` (prefix-suffix-middle order)."""
    if not isinstance(before, str) or not isinstance(after, str):
        raise TypeError(f"before and after must be strings, got {type(before).__name__} "
                        f"and {type(after).__name__}")
    return f"{FIM_PREFIX}{before}{FIM_SUFFIX}{after}{FIM_MIDDLE}"


def fim_token_ids(tokenizer) -> Dict[str, int]:
    """``{token: id}`` of the four FIM tokens; a ValueError naming the ones this vocabulary lacks."""
    ids, missing = {}, []
    for token in FIM_TOKENS:
        try:
            ids[token] = tokenizer.token_to_id(token)
        except (KeyError, ValueError):
            missing.append(token)
    if missing:
        raise ValueError(f"This model's tokenizer has no fill-in-the-middle token {', '.join(missing)}: "
                         "FIM needs a CodeGemma checkpoint (e.g. the preset 'code_gemma_2b_en'), "
                         "not a plain Gemma")
    return ids


def complete(model, before: str, after: str, max_new_tokens: int = 64, **sampling) -> str:
    """The text the model writes between ``before`` and ``after`` (the middle only).

    ``sampling``: as for ``model.generate`` (``sampler="top_k"``, ``temperature=...``, ``seed=...``).
    """
    fim_token_ids(model.tokenizer)                          # fail early, with a clear message
    prompt_ids = model.encode_prompt(fim_prompt(before, after))   # <bos> + the FIM prompt
    middle = model.generate_ids([prompt_ids], max_new_tokens, stop_tokens=list(STOP_TOKENS), **sampling)[0]
    return model.tokenizer.decode(middle)                   # generate_ids already cut at the stop token
