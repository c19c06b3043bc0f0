"""Scoring text the model did not write: log-likelihoods, multiple choice, perplexity.

A causal language model gives, at every position, a distribution over the next token. The
log-likelihood of a *continuation* given a *context* is the sum, over the continuation's
tokens, of ``log_softmax(logits)`` at the position before each token:

    ids = [<bos>] + encode(context) + encode(continuation)        # C continuation tokens
    log p(continuation | context) = sum_t log_softmax(logits[t - 1])[ids[t]]   for the last C t

Multiple choice as MMLU and HellaSwag are scored by EleutherAI's lm-evaluation-harness: the
model writes nothing; each option is a continuation of the question, and the option with the
highest score is the model's answer. Which score is the difference between ``acc`` and
``acc_norm``:

- ``"sum"``   (harness ``acc``): the total log-probability. Every token costs probability, so
  long options are penalised: a 6-token answer loses to a 2-token one that is less likely
  per token.
- ``"token"``: the mean per token (the sum divided by the number of tokens).
- ``"char"``  (harness ``acc_norm``): the sum divided by the option's length in characters
  (the harness uses bytes; for ASCII text they are the same). It does not depend on the
  tokenizer, so two models with different vocabularies are normalised alike.

Perplexity is ``exp(-(total log-probability) / (number of tokens))`` over texts: the average
branching factor the model sees. It is per *token*, so it only compares models that share a
tokenizer (a vocabulary with longer tokens has fewer, harder tokens for the same text).

Context and continuation are tokenised separately, so the split point is always a token
boundary (the harness does the same; start an option with its space: " dumps", not "dumps").
Rows of a batch are right-padded: a causal model never looks at later positions, so padding
cannot change a score (tests/test_evaluate.py checks it). Logits are computed only at the
scored positions, since Gemma's 262,144-word output layer is most of the 270M's compute.
"""

from __future__ import annotations

import weakref

import numpy as np
from keras import ops

from ..compile import compile_model_function

_SCORERS = weakref.WeakKeyDictionary()      # backbone -> its compiled scoring function
NORMALISATIONS = ("sum", "token", "char")


def _scorer(backbone):
    """Compiled ``(ids, mask, positions, targets) -> (batch, C) log-probabilities`` for ``backbone``."""
    if backbone not in _SCORERS:
        def score(token_ids, padding_mask, positions, targets):
            hidden = backbone.hidden_states({"token_ids": token_ids, "padding_mask": padding_mask})  # (B, S, W)
            picked = ops.take_along_axis(hidden, positions[:, :, None], axis=1)                      # (B, C, W)
            logprobs = ops.log_softmax(backbone.logits_from_hidden(picked), axis=-1)               # (B, C, V)
            return ops.take_along_axis(logprobs, targets[:, :, None], axis=2)[:, :, 0]              # (B, C)
        _SCORERS[backbone] = compile_model_function(backbone, score)
    return _SCORERS[backbone]


def _bucket(value: int, smallest: int) -> int:
    """The smallest power of two >= value (and >= smallest): few distinct shapes, few compilations."""
    return max(smallest, 1 << (int(value) - 1).bit_length())


def token_logprobs(model, contexts, continuations, batch_size: int = 4) -> list:
    """Per-token log-probabilities of each continuation given its context: a list of 1-D arrays.

    ``model``: a ``GemmaModel`` (anything with ``.backbone`` and ``.tokenizer``). A BOS token is
    prepended to every context; ``""`` as a context scores the continuation from the start of a text.
    """
    contexts, continuations = list(contexts), list(continuations)
    if len(contexts) != len(continuations):
        raise ValueError(f"token_logprobs needs one context per continuation: got {len(contexts)} contexts "
                         f"and {len(continuations)} continuations")
    tokenizer = model.tokenizer
    rows = []                                              # (context ids, continuation ids) per item
    for i, (context, continuation) in enumerate(zip(contexts, continuations)):
        if not isinstance(context, str) or not isinstance(continuation, str):
            raise TypeError(f"item {i}: context and continuation must be strings")
        continuation_ids = tokenizer.encode(continuation)
        if not continuation_ids:
            raise ValueError(f"item {i}: the continuation is empty: there is nothing to score")
        rows.append(([tokenizer.bos_id] + tokenizer.encode(context), continuation_ids))
    limit = model.backbone.config.max_sequence_length
    for i, (context_ids, continuation_ids) in enumerate(rows):
        if len(context_ids) + len(continuation_ids) > limit:
            raise ValueError(f"item {i}: {len(context_ids) + len(continuation_ids)} tokens exceed the model's "
                             f"max_sequence_length {limit}")
    score = _scorer(model.backbone)
    results = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        # Round shapes up to powers of two so the compiled function is reused (one trace per shape).
        seq = min(_bucket(max(len(c) + len(t) for c, t in chunk), 32), limit)
        scored = min(_bucket(max(len(t) for _, t in chunk), 8), seq)
        ids = np.full((batch_size, seq), tokenizer.pad_id, np.int32)
        mask = np.zeros((batch_size, seq), bool)
        mask[:, 0] = True                                   # filler rows: one visible token, never read
        positions = np.zeros((batch_size, scored), np.int32)   # position p predicts token p + 1
        targets = np.zeros((batch_size, scored), np.int32)
        for row, (context_ids, continuation_ids) in enumerate(chunk):
            full = context_ids + continuation_ids
            ids[row, :len(full)], mask[row, :len(full)] = full, True
            n = len(continuation_ids)
            positions[row, :n] = np.arange(len(context_ids) - 1, len(full) - 1)
            targets[row, :n] = continuation_ids
        out = np.asarray(ops.convert_to_numpy(score(*(ops.convert_to_tensor(a) for a in
                                                      (ids, mask, positions, targets)))), np.float64)
        results += [out[row, :len(continuation_ids)] for row, (_, continuation_ids) in enumerate(chunk)]
    return results


def continuation_logprob(model, contexts, continuations, batch_size: int = 4) -> np.ndarray:
    """``log p(continuation | context)`` for each pair: the sum of its token log-probabilities."""
    return np.array([lp.sum() for lp in token_logprobs(model, contexts, continuations, batch_size)])


def multiple_choice(model, questions, batch_size: int = 4) -> dict:
    """Score multiple-choice ``questions``: dicts with ``"question"`` (the context) and ``"options"``.

    Returns ``{"sum": picks, "token": picks, "char": picks, "scores": [...]}``: for each
    normalisation the index of the option the model picks per question, and per question the
    raw numbers (``logprob`` sums, ``tokens`` and ``chars`` per option) to inspect a decision.
    """
    contexts, continuations, owner = [], [], []
    for i, q in enumerate(questions):
        if "question" not in q or "options" not in q or len(q["options"]) < 2:
            raise ValueError(f"question {i} needs a 'question' and at least two 'options', got keys {sorted(q)}")
        contexts += [q["question"]] * len(q["options"])
        continuations += list(q["options"])
        owner += [i] * len(q["options"])
    logprobs = token_logprobs(model, contexts, continuations, batch_size)
    scores = [{"logprob": [], "tokens": [], "chars": []} for _ in questions]
    for i, option, lp in zip(owner, continuations, logprobs):
        scores[i]["logprob"].append(float(lp.sum()))
        scores[i]["tokens"].append(len(lp))
        scores[i]["chars"].append(len(option.encode("utf-8")))
    picks = {norm: [pick(s, norm) for s in scores] for norm in NORMALISATIONS}
    return {**picks, "scores": scores}


def pick(scores: dict, normalisation: str = "sum") -> int:
    """The option index with the highest score under ``normalisation`` ("sum", "token" or "char")."""
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    logprob = np.asarray(scores["logprob"])
    divisor = {"sum": 1.0, "token": np.asarray(scores["tokens"]), "char": np.asarray(scores["chars"])}[normalisation]
    return int(np.argmax(logprob / divisor))


def text_nll(model, texts, batch_size: int = 4) -> tuple:
    """(negative log-likelihood per text, tokens per text): the per-item numbers behind perplexity."""
    logprobs = token_logprobs(model, [""] * len(texts), texts, batch_size)
    return np.array([-lp.sum() for lp in logprobs]), np.array([len(lp) for lp in logprobs])


def perplexity(model, texts, batch_size: int = 4) -> float:
    """``exp(total negative log-likelihood / total tokens)`` over ``texts`` (each scored from BOS)."""
    nll, tokens = text_nll(model, texts, batch_size)
    return float(np.exp(nll.sum() / tokens.sum()))
