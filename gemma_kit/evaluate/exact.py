"""Exact match: the strictest score for generated text, and the one most benchmarks start with.

A prediction counts only if it equals the reference after ``strip()`` (leading and trailing
whitespace, including the newline a model often adds, is ignored; nothing else is). SQuAD-style
normalisation (lower case, no punctuation or articles) suits prose answers, not code, where
``x`` and ``X`` differ; this kit scores code and short answers, so it keeps the strict form.
"""

from __future__ import annotations


def exact_match_rate(predictions, references) -> tuple:
    """(fraction of ``predictions`` equal to their ``references`` after ``strip()``, per-item hits).

    ``hits`` is a list of bools, one per item, for confidence intervals (``wilson_interval(sum(hits),
    len(hits))``) and for paired comparisons of two models on the same items.
    """
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"exact_match_rate needs one prediction per reference: got {len(predictions)} "
                         f"predictions and {len(references)} references")
    if not references:
        raise ValueError("exact_match_rate got no items to score")
    for i, (p, r) in enumerate(zip(predictions, references)):
        if not isinstance(p, str) or not isinstance(r, str):
            raise TypeError(f"item {i}: prediction and reference must be strings, got "
                            f"{type(p).__name__} and {type(r).__name__}")
    hits = [p.strip() == r.strip() for p, r in zip(predictions, references)]
    return sum(hits) / len(hits), hits
