"""Which layers are local and which global: a diagram of what the last token can see, layer by layer.

Gemma 2 alternates sliding-window ("local") and global layers; Gemma 3 has five local
layers for every global one (window 512 tokens in the 270M model); Gemma 1 is all
global. A local layer's query sees only the last ``window`` tokens, a global one sees
everything before it. RecurrentGemma (Griffin) has no global attention at all: two
blocks in three are recurrent (a fixed-size state that summarises *all* the past), the
third attends to the last ``window + 1`` tokens.

Each row of the figure is a layer; the coloured bar spans the keys that the last
token of a ``length``-token text may attend to.
"""

from __future__ import annotations

from typing import Optional

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .capture import Capture

COLOURS = {"global": "tab:red", "local": "tab:blue", "attention": "tab:blue", "recurrent": "tab:green"}


def layer_map(capture: Capture, length: Optional[int] = None) -> Figure:
    """The layer stack of ``capture``'s model, drawn for a text of ``length`` tokens
    (default: the captured text, or twice the largest window if that is longer)."""
    windows = [w for w in capture.windows if w]
    length = length or max([capture.seq_len] + [2 * w for w in windows])
    layers = capture.num_layers
    fig = Figure(figsize=(8, 0.28 * layers + 1.5))
    ax = fig.add_subplot()
    for i, (kind, window) in enumerate(zip(capture.layer_kinds, capture.windows)):
        if kind == "recurrent":
            # The state carries everything, but fading: drawn as a gradient from faint to strong.
            for j in range(20):
                ax.barh(i, length / 20, left=j * length / 20, color=COLOURS[kind], alpha=0.05 + 0.04 * j, height=0.7)
            ax.text(length * 1.01, i, "recurrent state (all of the past, decaying)", va="center", fontsize=7)
            continue
        seen = length if window is None else min(window, length)
        ax.barh(i, seen, left=length - seen, color=COLOURS[kind], height=0.7)
        ax.text(length * 1.01, i, "global: all tokens" if window is None else f"{kind}: last {window} tokens",
                va="center", fontsize=7)
    ax.set_yticks(range(layers), [str(i) for i in range(layers)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, length * 1.45)
    ax.set_xlabel(f"key position in a {length}-token text (the query is the last token, at {length - 1})")
    ax.set_ylabel("layer")
    kinds = sorted(set(capture.layer_kinds), key=list(COLOURS).index)
    ax.legend(handles=[Patch(color=COLOURS[k], label=k) for k in kinds], loc="lower right", fontsize=7)
    ax.set_title("What the last token can attend to, layer by layer", fontsize=10)
    fig.tight_layout()
    return fig
