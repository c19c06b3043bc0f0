"""Which expert each token is routed to: Gemma 4's mixture of experts (26B-A4B) as pictures.

In every layer of 26B-A4B a router sends each token to ``k`` (8) of ``E`` (128) small
expert MLPs (``models/gemma4/moe.py``); ``run_and_capture`` keeps the weight every
expert got (``Capture.experts[layer]``, (batch, seq, experts), zero when not chosen).

    expert_routing(cap, layer=3)     # tokens x experts: who went where in one layer, and how strongly
    expert_usage(cap)                # layers x experts: the share of the tokens each expert received

Reading them: a token's row has exactly ``k`` coloured cells. Tokens that share
experts share columns; an expert no token of the text used is an empty column. In
a trained model the router balances the load over a corpus, so on a short text a
few experts per layer typically take most tokens. Many experts are drawn max-pooled
over experts (``pooling.py``; tokens stay rows) and the figure says so.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from matplotlib.figure import Figure

from .capture import Capture
from .pooling import max_pool


def _check_moe(capture: Capture, layer: Optional[int] = None) -> int:
    if not capture.expert_layers:
        raise ValueError("This capture has no experts: only Gemma 4 mixture-of-experts models (26B-A4B) route tokens")
    if layer is None:
        return capture.expert_layers[0]
    if not -capture.num_layers <= layer < capture.num_layers or capture.experts[layer % capture.num_layers] is None:
        raise ValueError(f"layer {layer} has no experts; layers with experts: {capture.expert_layers}")
    return layer % capture.num_layers


def expert_routing(capture: Capture, layer: int, row: int = 0, max_cells: int = 128, ax=None):
    """One layer's routing weights, tokens (rows) x experts (columns); the chosen ``k`` per token are coloured."""
    layer = _check_moe(capture, layer)
    weights = capture.experts[layer][row]                                  # (seq, experts)
    n, experts = weights.shape
    chosen = int((weights != 0).sum(axis=1).max())                         # k: the cells each token's row holds
    fig = None
    if ax is None:
        fig = Figure(figsize=(max(4.0, min(0.12 * experts, 14.0)) + 1.5, max(3.0, min(0.2 * n, 10.0)) + 1))
        ax = fig.add_subplot()
    shown, f = max_pool(weights[:, None, :], max_cells)                    # pools experts only: (seq, 1, cells)
    shown = np.where(shown[:, 0] > 0, shown[:, 0], np.nan)                  # unchosen: blank, not dark
    image = ax.imshow(shown, cmap="YlOrRd", vmin=0.0, vmax=max(float(np.nanmax(shown)), 1e-6), aspect="auto",
                      interpolation="nearest", extent=(-0.5, experts - 0.5, n - 0.5, -0.5))
    if n <= 60:
        ax.set_yticks(range(n), [t.replace("\n", "\\n") for t in capture.tokens[row]], fontsize=7)
    else:
        ax.set_ylabel("token position")
    if experts <= 32:
        ax.set_xticks(range(experts), [str(e) for e in range(experts)], fontsize=7)
    ax.set_xlabel("expert")
    note = f"\nmax-pooled in {f}x{f} blocks" if f > 1 else ""
    ax.set_title(f"layer {layer}: the {chosen} of {experts} experts each token is routed to{note}", fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="routing weight")
    return fig if fig is not None else ax


def expert_usage(capture: Capture, row: int = 0) -> Figure:
    """Layers (rows) x experts (columns): the fraction of this text's tokens each expert was chosen for."""
    _check_moe(capture)
    layers = capture.expert_layers
    used = np.stack([(capture.experts[i][row] > 0).mean(axis=0) for i in layers])   # (layers, experts)
    experts = used.shape[1]
    fig = Figure(figsize=(max(4.0, min(0.12 * experts, 14.0)) + 1.5, 0.3 * len(layers) + 1.5))
    ax = fig.add_subplot()
    image = ax.imshow(used, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(layers)), [f"layer {i}" for i in layers], fontsize=7)
    if experts <= 32:
        ax.set_xticks(range(experts), [str(e) for e in range(experts)], fontsize=7)
    ax.set_xlabel("expert")
    idle = int((used == 0).sum())
    ax.set_title(f"Share of the {capture.seq_len} tokens routed to each expert; "
                 f"{idle} of {used.size} (layer, expert) pairs unused", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of tokens")
    return fig
