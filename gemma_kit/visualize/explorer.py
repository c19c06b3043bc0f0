"""An interactive attention explorer for notebooks: ipywidgets controls and a matplotlib picture.

    from gemma_kit.visualize import run_and_capture, AttentionExplorer
    AttentionExplorer(run_and_capture(model, "The cat sat on the mat.")).widget   # last expression of a cell

Controls: the **layer** slider, the **head** (or the mean over heads), the **view**
("raw": the probabilities as computed; "window-masked": cells the layer's mask hides,
i.e. future tokens and keys beyond a sliding window, greyed out and the window's edge
drawn), the **position** slider and, below it, the tokens near that position as
buttons: **click a token** to see what it attends to. The picture shows the layer's
attention map (the selected query's row marked), the text shaded by how much the
selected token attends to each earlier token, and the logit lens at that position.
In a Gemma 4 mixture-of-experts model the line under the picture also names the
experts the selected token is routed to in that layer (``experts.py`` draws them all).

Why no JavaScript: the picture is drawn by matplotlib on the kernel side and sent as a
PNG into an ``ipywidgets.Image``; the controls are standard ipywidgets, whose code ships
with JupyterLab, Colab and VS Code's notebook renderer. Nothing is fetched from a CDN,
so it works offline. The price: no hover (a hover event needs custom JavaScript or
``ipympl``); clicking a token button replaces it.

Long inputs: the map is max-pooled to at most ``max_cells`` rows and columns, the text
strip shows the ``strip_length`` tokens ending at the selected one, and both say so on
the figure. ``render_seconds`` holds how long the last picture took to draw.
"""

from __future__ import annotations

import io
import time

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from .capture import Capture
from .figures import attention_heatmap, token_strip
from .logit_lens import logit_lens, logit_lens_figure
from .pooling import crop

VIEWS = ("raw", "window-masked")


class AttentionExplorer:
    def __init__(self, capture: Capture, row: int = 0, max_cells: int = 200, strip_length: int = 48,
                 token_buttons: int = 12, top_k: int = 4):
        if not capture.attention_layers:
            raise ValueError("This capture has no attention layers to explore")
        self.capture, self.row, self.max_cells = capture, row, max_cells
        self.strip_length, self.token_buttons, self.top_k = strip_length, token_buttons, top_k
        self._lens_cache = {}
        self._busy = False
        self.render_seconds = None
        layers = capture.attention_layers
        heads = capture.attention[layers[0]].shape[1]
        last = capture.seq_len - 1
        self.layer = widgets.SelectionSlider(options=[(str(i), i) for i in layers], value=layers[0],
                                             description="layer", continuous_update=False)
        self.head = widgets.Dropdown(options=[("mean over heads", "mean")] + [(f"head {h}", h) for h in range(heads)],
                                     value="mean", description="head")
        self.view = widgets.ToggleButtons(options=VIEWS, value="raw", description="view")
        self.position = widgets.IntSlider(min=0, max=last, value=last, description="position",
                                          continuous_update=False)
        self.tokens = widgets.ToggleButtons(description="token", style={"button_width": "auto"})
        self.image = widgets.Image(format="png")
        self.status = widgets.HTML()
        for control in (self.layer, self.head, self.view):
            control.observe(lambda change: self.render(), names="value")
        self.position.observe(self._position_moved, names="value")
        self.tokens.observe(self._token_clicked, names="value")
        self._fill_token_buttons()
        self.widget = widgets.VBox([widgets.HBox([self.layer, self.head]), self.view, self.position, self.tokens,
                                    self.image, self.status])
        self.render()

    # -- token buttons ---------------------------------------------------------------------------
    def _fill_token_buttons(self):
        start, stop = crop(self.capture.seq_len, self.position.value, self.token_buttons)
        labels = [self.capture.tokens[self.row][i].replace("\n", "\\n").strip() or "␣" for i in range(start, stop)]
        self._busy = True
        self.tokens.options = [(f"{i}:{label[:10]}", i) for i, label in zip(range(start, stop), labels)]
        self.tokens.value = self.position.value
        self._busy = False

    def _position_moved(self, change):
        self._fill_token_buttons()
        self.render()

    def _token_clicked(self, change):
        if not self._busy and change["new"] is not None:
            self.position.value = change["new"]          # moves the slider, which re-renders

    # -- the picture -------------------------------------------------------------------------------
    def lens(self, position):
        if position not in self._lens_cache:
            self._lens_cache[position] = logit_lens(self.capture, position, self.top_k, self.row)
        return self._lens_cache[position]

    def figure(self) -> Figure:
        """The explorer's current picture as a matplotlib Figure (also usable on its own)."""
        layer, head, query = self.layer.value, self.head.value, self.position.value
        fig = Figure(figsize=(13, 5.4))
        # Fixed margins: tight_layout would cost more than the drawing itself.
        grid = fig.add_gridspec(2, 2, width_ratios=(1.0, 1.25), height_ratios=(1.0, 1.3), left=0.08, right=0.98,
                                bottom=0.1, top=0.9, wspace=0.35, hspace=0.35)
        heat = fig.add_subplot(grid[:, 0])
        attention_heatmap(self.capture, layer, head, self.row, masked_view=self.view.value == "window-masked",
                          max_cells=self.max_cells, ax=heat)
        heat.axhline(query, color="red", lw=0.8)                      # the selected query's row
        token_strip(self.capture, layer, head, query, self.row, length=self.strip_length,
                    ax=fig.add_subplot(grid[0, 1]))
        logit_lens_figure(self.lens(query), ax=fig.add_subplot(grid[1, 1]),
                          title=f"Logit lens at token {query}: next-token guesses after each layer")
        return fig

    def render(self):
        start = time.perf_counter()
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=80)
        self.image.value = buffer.getvalue()
        self.render_seconds = time.perf_counter() - start
        probs = self.capture.attention[self.layer.value][self.row]       # (heads, queries, keys)
        self.status.value = (f"<small>{self.capture.seq_len} tokens, {probs.shape[0]} heads; "
                             f"drawn in {self.render_seconds:.2f} s{self.routing_note()}</small>")

    def routing_note(self) -> str:
        """In a mixture-of-experts layer, the selected token's experts, heaviest first; else nothing."""
        weights = self.capture.experts[self.layer.value] if self.capture.experts else None
        if weights is None:
            return ""
        query = self.position.value
        row = weights[self.row, query]                                   # (experts,)
        chosen = [int(e) for e in np.argsort(-row) if row[e] > 0]
        return f"; token {query} goes to experts " + ", ".join(f"{e} ({row[e]:.2f})" for e in chosen)

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


def explore(capture: Capture, **options) -> widgets.VBox:
    """Build an ``AttentionExplorer`` and return its widget (show it as a cell's last expression)."""
    return AttentionExplorer(capture, **options).widget
