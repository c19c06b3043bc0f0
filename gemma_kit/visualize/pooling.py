"""Making long inputs drawable: crop a window of tokens, or pool a big matrix into blocks.

A 2,000-token attention map has 4 million cells, more than a screen has pixels,
and drawing 2,000 token labels or 4 million lines takes seconds. Every figure
therefore draws at most ``max_cells`` rows and columns: an ``(n, m)`` matrix is
split into ``f x f`` blocks and each block is replaced by its **maximum** (not its
mean: a thin diagonal, such as a previous-token head, would fade away in a mean).
Token-level views (labels, lines) instead show a *crop*: a window of consecutive
tokens. Figures say on themselves when they pooled or cropped.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np


def pool_factor(size: int, max_cells: int) -> int:
    """The smallest block size ``f`` with ``ceil(size / f) <= max_cells``."""
    if max_cells < 1:
        raise ValueError(f"max_cells must be at least 1, got {max_cells}")
    return max(1, math.ceil(size / max_cells))


def max_pool(matrix: np.ndarray, max_cells: int = 256) -> Tuple[np.ndarray, int]:
    """Max-pool the last two axes of ``matrix`` (..., n, m) in ``f x f`` blocks; returns (pooled, f).

    The last block of a row or column may be partial. ``np.maximum.reduceat`` takes the maximum of
    each run of ``f`` columns, then of ``f`` rows, in one pass over the data and without a copy.
    """
    n, m = matrix.shape[-2:]
    f = max(pool_factor(n, max_cells), pool_factor(m, max_cells))
    if f == 1:
        return matrix, 1
    pooled = np.maximum.reduceat(matrix, np.arange(0, m, f), axis=-1)      # (..., n, ceil(m / f))
    return np.maximum.reduceat(pooled, np.arange(0, n, f), axis=-2), f    # (..., ceil(n / f), ceil(m / f))


def crop(seq_len: int, center: int, length: int) -> Tuple[int, int]:
    """``(start, stop)`` of a window of at most ``length`` tokens around ``center``, inside ``[0, seq_len)``."""
    if not 0 <= center < seq_len:
        raise ValueError(f"position {center} is outside the sequence of {seq_len} tokens")
    length = min(length, seq_len)
    start = min(max(center - length // 2, 0), seq_len - length)
    return start, start + length
