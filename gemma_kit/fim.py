"""Fill-in-the-middle (FIM): let a code model write the missing part of a file.

A left-to-right language model only continues text. To complete code *inside*
a file, where the code after the cursor matters too, CodeGemma was trained
with the fill-in-the-middle transformation of Bavarian et al. (2022),
"Efficient Training of Language Models to Fill in the Middle"
(arXiv:2207.14255): cut a training document into ``prefix``, ``middle`` and
``suffix``, and move the middle to the end, behind marker tokens:

    <|fim_prefix|>{before}<|fim_suffix|>{after}<|fim_middle|>{middle}<|file_separator|>

The model still reads left to right, but by the time it writes the middle it
has already seen both sides of the hole. That is the prefix-suffix-middle
(PSM) order. The paper's other order, suffix-prefix-middle (SPM), puts the
suffix first and the prefix right before the middle:

    <|fim_prefix|><|fim_suffix|>{after}<|fim_middle|>{before}{middle}<|file_separator|>

so the middle continues the prefix exactly as plain left-to-right text does.
A model that never saw FIM already knows that half of the task; it only has
to learn to read the suffix and to stop. Lesson 06 tunes Gemma 3 in SPM order.

At inference time we give the model the prompt (everything before
``{middle}``) and let it generate; it ends the middle with
``<|file_separator|>`` (or another FIM token), and we keep only the text it
wrote before that.

CodeGemma's four markers are vocabulary entries (ids 67 prefix, 68 middle,
69 suffix, 70 file separator), "user-defined" pieces that the tokenizer
matches as whole tokens inside text. Gemma 3's vocabulary has no FIM markers,
but it has 6,242 reserved pieces ``<unused0>``..``<unused6241>``, matched the same
way; ``GEMMA3_FIM_MARKERS`` gives four of them the four roles, and a LoRA
adapter trained on that format (lesson 06, ``data/make_fim_adapter.py``)
teaches Gemma 3 270M to fill in the middle. ``enable_fim(model)`` (which
``tuning.load_adapter`` calls for such an adapter) tells ``complete`` to use
them, in the order it was trained in; a plain Gemma without either gets a clear error, not nonsense.

    model = gemma_kit.load(gemma_kit.presets.preset_handle("code_gemma_2b_en"))
    model.complete("def add(a, b):\\n    return ", "\\n\\nprint(add(1, 2))\\n")   # -> "a + b"
    model.complete([before1, before2], [after1, after2])                           # one batched generate
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
FILE_SEPARATOR = "<|file_separator|>"

FIM_TOKENS = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FILE_SEPARATOR)   # CodeGemma ids 67, 68, 69, 70
# The middle is over when the model writes any FIM marker, a file separator or <eos>.
STOP_TOKENS = FIM_TOKENS + ("<eos>",)

# Role -> token. "end" is the file separator that closes the middle.
CODEGEMMA_FIM_MARKERS = {"prefix": FIM_PREFIX, "middle": FIM_MIDDLE, "suffix": FIM_SUFFIX, "end": FILE_SEPARATOR}
# Gemma 3's first four reserved pieces (ids 6, 7, 8, 9), in CodeGemma's order. Their embedding rows are
# distinct (pairwise distances 0.47 to 0.83, norms 1.03 like ordinary words in the 270M), so the frozen
# embeddings already tell the four apart: LoRA on the attention layers only has to learn what they mean.
GEMMA3_FIM_MARKERS = {"prefix": "<unused0>", "middle": "<unused1>", "suffix": "<unused2>", "end": "<unused3>"}


ORDERS = ("psm", "spm")   # prefix-suffix-middle (CodeGemma's prompt), suffix-prefix-middle


def fim_prompt(before: str, after: str, markers: Dict[str, str] = CODEGEMMA_FIM_MARKERS, order: str = "psm") -> str:
    """The prompt that asks for the text between ``before`` and ``after``, in ``order`` "psm" or "spm"."""
    if not isinstance(before, str) or not isinstance(after, str):
        raise TypeError(f"before and after must be strings, got {type(before).__name__} "
                        f"and {type(after).__name__}")
    check_order(order)
    if order == "spm":                      # the middle goes on where the prefix stops, as plain text would
        return f"{markers['prefix']}{markers['suffix']}{after}{markers['middle']}{before}"
    return f"{markers['prefix']}{before}{markers['suffix']}{after}{markers['middle']}"


def check_order(order: str) -> str:
    """``order`` itself if it is one of ``ORDERS``, else a ValueError naming the choices."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS} (prefix-suffix-middle or suffix-prefix-middle), got {order!r}")
    return order


def fim_token_ids(tokenizer, markers: Dict[str, str] = CODEGEMMA_FIM_MARKERS) -> Dict[str, int]:
    """``{token: id}`` of the four FIM tokens; a ValueError naming the ones this vocabulary lacks."""
    ids, missing = {}, []
    for token in markers.values():
        try:
            ids[token] = tokenizer.token_to_id(token)
        except (KeyError, ValueError):
            missing.append(token)
    if missing:
        raise ValueError(f"This model's tokenizer has no fill-in-the-middle token {', '.join(missing)}: "
                         "FIM needs a CodeGemma checkpoint (e.g. the preset 'code_gemma_2b_en'), or a Gemma 3 "
                         "with a FIM adapter (tuning.load_adapter of one trained with fim.GEMMA3_FIM_MARKERS), "
                         "not a plain Gemma")
    return ids


def enable_fim(model, markers: Dict[str, str] = GEMMA3_FIM_MARKERS, order: str = "psm") -> Dict[str, str]:
    """Tell ``complete`` that ``model`` is (to be) tuned for FIM with ``markers`` in ``order`` ("psm"/"spm")."""
    if set(markers) != set(CODEGEMMA_FIM_MARKERS):
        raise ValueError(f"markers must give the roles {sorted(CODEGEMMA_FIM_MARKERS)}, got {sorted(markers)}")
    fim_token_ids(model.tokenizer, markers)
    model.fim_order = check_order(order)
    model.fim_markers = dict(markers)
    return model.fim_markers


def fim_markers(model) -> Dict[str, str]:
    """The markers ``complete`` uses: CodeGemma's if the vocabulary has them, else those of ``enable_fim``."""
    try:
        fim_token_ids(model.tokenizer)
        return dict(CODEGEMMA_FIM_MARKERS)
    except ValueError:
        markers = getattr(model, "fim_markers", None)
        if markers is None:
            raise
        fim_token_ids(model.tokenizer, markers)
        return markers


def fim_format(model) -> Tuple[Dict[str, str], str]:
    """(markers, order) that ``model`` uses: CodeGemma's own in PSM order, else those of ``enable_fim``."""
    markers = fim_markers(model)
    return markers, "psm" if markers == CODEGEMMA_FIM_MARKERS else getattr(model, "fim_order", "psm")


def model_prompt(model, before: str, after: str) -> str:
    """``fim_prompt`` with the markers and the order ``model`` uses."""
    return fim_prompt(before, after, *fim_format(model))


def complete(model, before: Union[str, Sequence[str]], after: Union[str, Sequence[str]],
             max_new_tokens: int = 64, **sampling) -> Union[str, List[str]]:
    """The text the model writes between ``before`` and ``after`` (the middle only).

    ``before`` and ``after``: two strings, or two lists of the same length (one batched generation,
    a list of middles back). ``sampling``: as for ``model.generate`` (``sampler="top_k"``, ``seed=...``).
    """
    single = isinstance(before, str) and isinstance(after, str)
    befores, afters = ([before], [after]) if single else (list(before), list(after))
    if len(befores) != len(afters) or not befores:
        raise ValueError(f"before and after must be two strings or two non-empty lists of the same length, got "
                         f"{len(befores)} and {len(afters)} items")
    markers, order = fim_format(model)                             # fail early, with a clear message
    prompts = [model.encode_prompt(fim_prompt(b, a, markers, order)) for b, a in zip(befores, afters)]   # <bos> + prompt
    stops = list(markers.values()) + ["<eos>"]
    middles = model.generate_ids(prompts, max_new_tokens, stop_tokens=stops, **sampling)
    texts = [model.tokenizer.decode(ids) for ids in middles]       # generate_ids already cut at the stop token
    return texts[0] if single else texts
