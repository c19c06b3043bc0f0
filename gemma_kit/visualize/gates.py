"""RecurrentGemma's gates as pictures: input gate, recurrence gate and effective decay per token and channel.

For every token ``t`` and channel ``c`` of a recurrent block the RG-LRU (``models/griffin/rg_lru.py``) computes

    gate_x = sigmoid(input_gate(u_t))         how much of the new input enters the state
    gate_a = sigmoid(a_gate(u_t))             how strongly this token applies the channel's decay
    a_t    = exp(-8 * gate_a * softplus(a_param))    the effective decay: h_t = a_t h_{t-1} + ...

``a_t`` near 1 means "keep the past" (a long memory); near 0 means "overwrite it".
At a document start ``a_t = 0``: the state resets. Each panel is tokens (rows) x
channels (columns); wide models are max-pooled over channels and the title says so.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .capture import Capture
from .pooling import max_pool

PANELS = (("input_gate", "input gate  gate_x", "Blues"), ("a_gate", "recurrence gate  gate_a", "Purples"),
          ("decay", "effective decay  a_t", "magma"))


def gate_heatmaps(capture: Capture, block: int, row: int = 0, max_cells: int = 256) -> Figure:
    """Three heatmaps (tokens x channels) for recurrent block ``block``: gate_x, gate_a and a_t."""
    if not capture.gates:
        raise ValueError("This capture has no RG-LRU gates: only RecurrentGemma (Griffin) models have them")
    if not 0 <= block < capture.num_layers or capture.gates["decay"][block] is None:
        raise ValueError(f"block {block} is not a recurrent block; recurrent blocks: {capture.recurrent_layers}")
    n = capture.seq_len
    fig = Figure(figsize=(13, max(3.0, min(0.18 * n, 9.0)) + 1))
    axes = fig.subplots(1, 3)
    for ax, (name, title, cmap) in zip(axes, PANELS):
        values = capture.gates[name][block][row]                               # (seq, lru_width)
        # Pool channels only (rows stay tokens) when there are too many to draw.
        pooled, f = max_pool(values[None], max_cells) if values.shape[1] > max_cells else (values[None], 1)
        image = ax.imshow(pooled[0], cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest",
                          extent=(-0.5, values.shape[1] - 0.5, n - 0.5, -0.5))
        ax.set_title(title + (f"\n(max-pooled in {f}x{f} blocks)" if f > 1 else ""), fontsize=9)
        ax.set_xlabel("channel")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= 60:
        axes[0].set_yticks(range(n), [t.replace("\n", "\\n") for t in capture.tokens[row]], fontsize=7)
    else:
        axes[0].set_ylabel("token position")
    decay = capture.gates["decay"][block][row]
    fig.suptitle(f"Block {block} (recurrent): mean decay {decay.mean():.2f}; "
                 f"{np.mean(decay > 0.9):.0%} of (token, channel) pairs keep > 90% of the state", fontsize=10)
    fig.tight_layout()
    return fig
