"""Static attention figures (matplotlib): heatmaps, a layers x heads grid, a token-to-token line view.

Every function returns a ``matplotlib.figure.Figure`` (or draws into ``ax``) and never
calls ``plt.show``; ``save_figure(fig, "name")`` writes ``name.png`` and ``name.svg``.

Reading an attention map: row ``q`` is one query token, column ``k`` a key token, and
cell ``(q, k)`` the probability that ``q`` gives to ``k`` (each row sums to one). Causal
models leave the upper triangle empty; a sliding-window ("local") layer also leaves
everything more than ``window`` tokens left of the diagonal empty. A bright diagonal
just below the main one is a *previous-token head*; a bright first column is a head
that parks its attention on ``<bos>`` (an "attention sink").

Long inputs are max-pooled or cropped (``pooling.py``) and the figure says so.
The colour scale is a square root (``PowerNorm(0.5)``) so that small weights stay visible.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional, Sequence, Union

import matplotlib
import numpy as np
from matplotlib import colors
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from .capture import Capture
from .pooling import crop, max_pool

CMAP = "viridis"
# Token pieces can be emoji or CJK that matplotlib's default font lacks: they are drawn as boxes,
# and a warning per missing glyph per figure would bury the lesson's output.
warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")


def save_figure(fig: Figure, stem: Union[str, os.PathLike], dpi: int = 120):
    """Write ``stem.png`` and ``stem.svg``; returns the two paths."""
    stem = os.fspath(stem)
    if os.path.dirname(stem):
        os.makedirs(os.path.dirname(stem), exist_ok=True)
    paths = (stem + ".png", stem + ".svg")
    fig.savefig(paths[0], dpi=dpi, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def _check_layer(capture: Capture, layer: int) -> int:
    if not -capture.num_layers <= layer < capture.num_layers:
        raise ValueError(f"layer {layer} does not exist: the model has {capture.num_layers} layers")
    layer %= capture.num_layers
    if capture.attention[layer] is None:
        raise ValueError(f"layer {layer} is a {capture.layer_kinds[layer]} block without attention; "
                         f"layers with attention: {capture.attention_layers}")
    return layer


def head_probs(capture: Capture, layer: int, head: Union[int, str] = "mean", row: int = 0) -> np.ndarray:
    """(queries, keys) probabilities of one head, or their mean over heads with ``head="mean"``."""
    probs = capture.attention[_check_layer(capture, layer)][row]        # (heads, queries, keys)
    if head == "mean":
        return probs.mean(axis=0)
    if not isinstance(head, (int, np.integer)) or not 0 <= head < probs.shape[0]:
        raise ValueError(f"head must be 'mean' or an integer in [0, {probs.shape[0]}), got {head!r}")
    return probs[head]


def layer_title(capture: Capture, layer: int) -> str:
    window = capture.windows[layer]
    return f"layer {layer} ({capture.layer_kinds[layer]}" + (f", window {window})" if window else ")")


def attention_heatmap(capture: Capture, layer: int, head: Union[int, str] = "mean", row: int = 0,
                      masked_view: bool = False, max_cells: int = 256, ax=None, colorbar: bool = True):
    """One layer's (queries, keys) map. ``masked_view``: grey out what the layer's mask hides
    (future tokens; keys beyond a sliding window) and draw the window's edge."""
    layer = _check_layer(capture, layer)
    fig = None
    if ax is None:
        fig = Figure(figsize=(5.5, 4.8))
        ax = fig.add_subplot()
    probs, f = max_pool(head_probs(capture, layer, head, row), max_cells)  # (q / f, k / f)
    if masked_view:
        visible, _ = max_pool(capture.masks[layer][row].astype(np.float32), max_cells)
        probs = np.where(visible > 0, probs, np.nan)
    cmap = matplotlib.colormaps[CMAP].with_extremes(bad="#d9d9d9")       # hidden cells in grey
    n = capture.seq_len
    image = ax.imshow(probs, cmap=cmap, norm=colors.PowerNorm(0.5, vmin=0.0, vmax=max(np.nanmax(probs), 1e-6)),
                      extent=(-0.5, n - 0.5, n - 0.5, -0.5), interpolation="nearest", aspect="auto")
    window = capture.windows[layer]
    if masked_view and window and window < n:
        ax.plot([-0.5, n - window - 0.5], [window - 0.5, n - 0.5], color="red", lw=1, ls="--",
                label=f"window edge ({window} keys)")
        ax.legend(loc="upper right", fontsize=7)
    if n <= 40:
        labels = capture.tokens[row]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
    head_name = "mean over heads" if head == "mean" else f"head {head}"
    note = f"\nmax-pooled in {f}x{f} blocks ({n} tokens)" if f > 1 else ""
    ax.set_title(f"{layer_title(capture, layer)}, {head_name}{note}", fontsize=9)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="probability (sqrt scale)")
    return fig if fig is not None else ax


def attention_grid(capture: Capture, row: int = 0, layers: Optional[Sequence[int]] = None, max_cells: int = 64,
                   cell_inches: float = 1.3) -> Figure:
    """Every (layer, head) map at a glance: one row per layer, one column per head, max-pooled.

    Each small map is scaled by its own maximum. They are tiled into *one* image (with grey gaps)
    rather than drawn as layers x heads separate plots, which would take seconds to lay out.
    """
    layers = list(capture.attention_layers if layers is None else [_check_layer(capture, i) for i in layers])
    heads = capture.attention[layers[0]].shape[1]
    tiles, pooled = [], 1
    for layer in layers:
        probs, pooled = max_pool(capture.attention[layer][row], max_cells)       # (heads, cells, cells)
        probs = probs / np.maximum(probs.max(axis=(1, 2), keepdims=True), 1e-9)
        tiles.append(probs)
    cells = tiles[0].shape[-1]
    step = cells + max(1, cells // 12)                                          # a tile and its gap
    mosaic = np.full((len(layers) * step, heads * step), np.nan, np.float32)
    for r, probs in enumerate(tiles):
        for h in range(heads):
            mosaic[r * step:r * step + cells, h * step:h * step + cells] = np.sqrt(probs[h])   # sqrt colour scale
    fig = Figure(figsize=(cell_inches * heads + 1.5, cell_inches * len(layers) + 0.9))
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap=matplotlib.colormaps[CMAP].with_extremes(bad="white"), vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.set_xticks([h * step + cells / 2 for h in range(heads)], [f"head {h}" for h in range(heads)], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([r * step + cells / 2 for r in range(len(layers))],
                  [f"layer {i} {capture.layer_kinds[i][0].upper()}" for i in layers], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    note = f", max-pooled in {pooled}x{pooled} blocks" if pooled > 1 else ""
    ax.set_title(f"Attention, layers x heads: {capture.seq_len} tokens{note}\neach map scaled to its own maximum, "
                 f"sqrt colour scale; L = local, G = global;\nrows = queries, columns = keys", fontsize=9)
    return fig


def head_lines(capture: Capture, layer: int, head: Union[int, str] = "mean", row: int = 0,
               query: Optional[int] = None, length: int = 40, ax=None):
    """bertviz-style: queries on the right, keys on the left, a line per pair.

    A line's opacity is its probability divided by the largest in its query's row, so that
    a head spread thinly over many keys stays visible.

    ``query``: highlight that token's lines only. Inputs longer than ``length`` tokens are cropped
    to ``length`` tokens (around ``query``, or at the end) and the title says so.
    """
    probs = head_probs(capture, layer, head, row)
    n = capture.seq_len
    start, stop = crop(n, n - 1 if query is None else query, length)
    probs = probs[start:stop, start:stop]                                 # (shown, shown)
    labels = capture.tokens[row][start:stop]
    fig = None
    if ax is None:
        fig = Figure(figsize=(5, max(3.0, 0.22 * len(labels) + 1)))
        ax = fig.add_subplot()
    y = -np.arange(len(labels))
    for side, align in ((0.0, "right"), (1.0, "left")):
        for yi, label in zip(y, labels):
            bold = query is not None and side == 1.0 and start + (-yi) == query
            ax.text(side + (-0.02 if side == 0 else 0.02), yi, label, ha=align, va="center", fontsize=7,
                    fontweight="bold" if bold else "normal")
    queries = range(len(labels)) if query is None else [query - start]
    segments, rgba = [], []
    for q in queries:
        strongest = max(probs[q].max(), 1e-9)
        for k in np.nonzero(probs[q] > 0.05 * strongest)[0]:                  # skip invisible lines
            segments.append([(0, y[k]), (1, y[q])])
            rgba.append((0.12, 0.47, 0.71, float(probs[q, k] / strongest)))
    ax.add_collection(LineCollection(segments, colors=rgba, linewidths=1.5))  # one artist: fast to draw
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylim(y[-1] - 1, 1)
    ax.axis("off")
    note = f"\ntokens {start}..{stop - 1} of {n} shown (cropped)" if stop - start < n else ""
    head_name = "mean over heads" if head == "mean" else f"head {head}"
    ax.set_title(f"{layer_title(capture, layer)}, {head_name}: keys (left) <- queries (right){note}", fontsize=9)
    return fig if fig is not None else ax


def token_strip(capture: Capture, layer: int, head: Union[int, str], query: int, row: int = 0,
                length: int = 48, per_line: int = 8, ax=None):
    """The text up to ``query``, each token shaded by how much ``query`` (boxed) attends to it."""
    probs = head_probs(capture, layer, head, row)[query]                  # (keys,)
    start, stop = max(0, query + 1 - length), query + 1                   # keys a query can see end at itself
    fig = None
    if ax is None:
        fig = Figure(figsize=(7, 3))
        ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Oranges"]
    top = max(probs[start:stop].max(), 1e-6)
    for i, k in enumerate(range(start, stop)):
        x, y = (i % per_line) / per_line, -(i // per_line)
        text = capture.tokens[row][k].replace("\n", "\\n")[:12] or "∅"
        ax.text(x, y, text, fontsize=8, va="center", ha="left",
                bbox=dict(boxstyle="round,pad=0.2", fc=cmap(0.85 * probs[k] / top),
                          ec="black" if k == query else "none", lw=1.5))
    lines = (stop - start + per_line - 1) // per_line
    ax.set_xlim(0, 1.05)
    ax.set_ylim(-lines + 0.4, 0.6)
    ax.axis("off")
    note = f" (tokens {start}..{query} of {capture.seq_len}: cropped)" if start > 0 else ""
    best = int(np.argmax(probs))
    ax.set_title(f"What token {query} {capture.tokens[row][query]!r} attends to{note}; "
                 f"strongest: {best} {capture.tokens[row][best]!r} ({probs[best]:.2f})", fontsize=8)
    return fig if fig is not None else ax
