"""The logit lens: what would the model predict if it stopped after layer ``i``?

nostalgebraist (2020) noticed that the residual stream of a transformer can be read
with the model's own output layer at *any* depth, not only after the last block:

    guess_i = softmax(unembed(final_norm(hidden_i)))        # (vocab,) for one position

``hidden_i`` is the residual stream after layer ``i`` (``Capture.hidden``), and
``final_norm`` and ``unembed`` (the tied embedding, with Gemma 2's soft-cap) are the
backbone's own. After the last layer it is exactly the model's prediction; in early
layers the guesses are often the input token itself or generic words, and they sharpen
towards the answer layer by layer. It works unchanged for Griffin, whose blocks write
into a residual stream the same way.
"""

from __future__ import annotations

import dataclasses
from typing import List

import numpy as np
from keras import ops

from .capture import Capture, token_labels


@dataclasses.dataclass
class LogitLens:
    """Top-k next-token guesses after every layer, for one position of one batch row."""
    position: int
    token_ids: np.ndarray       # (layers, top_k) int
    probs: np.ndarray           # (layers, top_k) float32
    tokens: List[List[str]]     # (layers, top_k) readable pieces

    def rows(self):
        """``[(layer, [(token, prob), ...]), ...]``, handy for printing."""
        return [(i, list(zip(toks, map(float, p)))) for i, (toks, p) in enumerate(zip(self.tokens, self.probs))]


def logit_lens(capture: Capture, position: int = -1, top_k: int = 5, row: int = 0) -> LogitLens:
    """The top-``top_k`` next-token guesses after each layer, at ``position`` (negative counts from the end)."""
    seq = capture.seq_len
    if not -seq <= position < seq:
        raise ValueError(f"position {position} is outside the captured sequence of {seq} tokens")
    if not 0 <= row < capture.token_ids.shape[0]:
        raise ValueError(f"row {row} is outside the captured batch of {capture.token_ids.shape[0]}")
    if capture.backbone is None:
        raise ValueError("This Capture has no backbone (it is needed to unembed the hidden states)")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    position %= seq
    backbone = capture.backbone
    hidden = np.stack([h[row, position] for h in capture.hidden])                 # (layers, width)
    hidden = ops.convert_to_tensor(hidden[None], dtype=backbone.compute_dtype)    # (1, layers, width)
    logits = ops.convert_to_numpy(backbone.logits_from_hidden(backbone.final_norm(hidden)))[0]
    logits = np.asarray(logits, np.float64)                                       # (layers, vocab)
    top = np.argpartition(-logits, top_k - 1, axis=-1)[:, :top_k]                 # the best k, unordered
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(logits, top, -1), -1), -1)   # (layers, top_k)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return LogitLens(position=position, token_ids=top, probs=np.take_along_axis(probs, top, -1).astype(np.float32),
                     tokens=[token_labels(capture.tokenizer, ids) for ids in top])


def logit_lens_figure(lens: LogitLens, ax=None, title: str = ""):
    """A table: one row per layer, the top guesses left to right, shaded by probability."""
    from matplotlib.figure import Figure

    layers, k = lens.probs.shape
    fig = None
    if ax is None:
        fig = Figure(figsize=(1.6 * k + 1, 0.26 * layers + 1))
        ax = fig.add_subplot()
    ax.imshow(lens.probs, cmap="Greens", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(layers):
        for j in range(k):
            text = lens.tokens[i][j].replace("\n", "\\n")[:10]
            ax.text(j, i, f"{text!r} {lens.probs[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if lens.probs[i, j] > 0.6 else "black")
    ax.set_yticks(range(layers), [f"after {i}" for i in range(layers)], fontsize=7)
    ax.set_xticks(range(k), [f"#{j + 1}" for j in range(k)], fontsize=7)
    ax.set_title(title or f"Logit lens at position {lens.position}: top guesses for the next token", fontsize=9)
    return fig if fig is not None else ax
