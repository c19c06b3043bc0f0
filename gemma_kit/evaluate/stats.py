"""How sure are we? Confidence intervals for the numbers a benchmark reports.

A score measured on ~100 questions is itself a random draw: another 100 questions from the
same source would give another score. Two standard ways to say how far it could move:

- ``wilson_interval(successes, n)``: for a *rate* (accuracy, exact match, parse rate). The
  Wilson score interval (Wilson 1927; recommended by Brown, Cai & DasGupta 2001, "Interval
  Estimation for a Binomial Proportion") stays inside [0, 1] and behaves at 0/n and n/n, where
  the textbook ``p +- 1.96 sqrt(p(1-p)/n)`` collapses to a width of zero.
- ``bootstrap_interval(values)``: for any statistic of per-item values (mean loss, perplexity):
  resample the items with replacement many times and take the percentiles (Efron 1979).
- ``paired_bootstrap_interval(base, tuned)``: the difference of two models scored on the *same*
  items. Resampling the items together keeps the pairing, so the per-item noise that both
  models share cancels and the interval is narrower than two separate ones suggest.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)       # 1.95996... for 0.95


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple:
    """(low, high) of the Wilson score interval for ``successes`` out of ``n`` trials."""
    if n <= 0:
        raise ValueError(f"wilson_interval needs n >= 1 trials, got n={n!r}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes!r}")
    z = _z(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half_width = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)      # exact ends, not 1e-17 of rounding
    high = 1.0 if successes == n else min(1.0, centre + half_width)
    return float(low), float(high)


def _percentiles(samples: np.ndarray, confidence: float) -> tuple:
    _z(confidence)                                            # validates confidence
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def _as_values(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D list of per-item numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _weighted_means(values: np.ndarray, weights: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Mean of ``values`` weighted by ``weights`` for each resample (row of ``picks``): (resamples,)."""
    return (values[picks] * weights[picks]).sum(axis=1) / weights[picks].sum(axis=1)


def bootstrap_interval(values, weights=None, confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple:
    """(low, high) percentile-bootstrap interval of the (weighted) mean of per-item ``values``.

    ``weights``: e.g. tokens per text with ``values`` = mean loss per token of each text, so the
    statistic is total loss / total tokens, as perplexity needs (``exp`` the two ends for perplexity).
    """
    values = _as_values(values, "values")
    weights = np.ones_like(values) if weights is None else _as_values(weights, "weights")
    if weights.shape != values.shape:
        raise ValueError(f"weights must match values: {weights.size} weights for {values.size} values")
    picks = np.random.default_rng(seed).integers(0, values.size, size=(resamples, values.size))  # (R, n)
    return _percentiles(_weighted_means(values, weights, picks), confidence)


def paired_bootstrap_interval(base, tuned, weights=None, confidence: float = 0.95, resamples: int = 2000,
                              seed: int = 0) -> tuple:
    """(low, high) interval of mean(tuned) - mean(base) over the same items, resampled in pairs."""
    base, tuned = _as_values(base, "base"), _as_values(tuned, "tuned")
    if base.shape != tuned.shape:
        raise ValueError(f"base and tuned must score the same items: {base.size} vs {tuned.size} values")
    weights = np.ones_like(base) if weights is None else _as_values(weights, "weights")
    if weights.shape != base.shape:
        raise ValueError(f"weights must match the items: {weights.size} weights for {base.size} items")
    picks = np.random.default_rng(seed).integers(0, base.size, size=(resamples, base.size))  # same items for both
    differences = _weighted_means(tuned, weights, picks) - _weighted_means(base, weights, picks)
    return _percentiles(differences, confidence)
