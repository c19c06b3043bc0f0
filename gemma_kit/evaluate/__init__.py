"""How a benchmark scores a model: the measurements the lessons share.

    from gemma_kit import evaluate
    rate, hits = evaluate.exact_match_rate(predictions, references)   # exact.py
    low, high = evaluate.wilson_interval(sum(hits), len(hits))         # stats.py (95% by default)
    evaluate.parses(before, middle, after)                             # code.py: is the filled file Python?
    result = evaluate.run_tests(program, tests, timeout=5.0)           # code.py: in a subprocess
    evaluate.pass_at_k(n=10, c=3, k=5)                                 # code.py: Chen et al. 2021
    scores = evaluate.continuation_logprob(model, contexts, continuations)   # likelihood.py
    picks = evaluate.multiple_choice(model, questions)                  # likelihood.py: acc / acc_norm
    ppl = evaluate.perplexity(model, texts)                            # likelihood.py

One concept per file: ``exact.py`` (string match), ``stats.py`` (intervals), ``code.py``
(running generated code), ``likelihood.py`` (scoring text the model did not write).
"""

from .code import pass_at_k, parses, run_tests
from .exact import exact_match_rate
from .likelihood import (NORMALISATIONS, continuation_logprob, multiple_choice, perplexity, pick, text_nll,
                         token_logprobs)
from .stats import bootstrap_interval, paired_bootstrap_interval, wilson_interval

__all__ = ["exact_match_rate", "wilson_interval", "bootstrap_interval", "paired_bootstrap_interval",
           "parses", "run_tests", "pass_at_k", "token_logprobs", "continuation_logprob", "multiple_choice",
           "pick", "NORMALISATIONS", "text_nll", "perplexity"]
