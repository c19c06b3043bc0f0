"""See inside a model: capture attention (RecurrentGemma's gates, Gemma 4's expert routing), draw it, explore it.

    from gemma_kit import visualize as viz
    cap = viz.run_and_capture(model, "The cat sat on the mat.")    # capture.py
    viz.attention_grid(cap)                       # figures.py: layers x heads
    viz.head_lines(cap, layer=3, head=1)          # figures.py: token-to-token lines
    viz.layer_map(cap)                            # layer_map.py: local vs global layers
    viz.logit_lens_figure(viz.logit_lens(cap))    # logit_lens.py
    viz.gate_heatmaps(griffin_cap, block=0)       # gates.py: RG-LRU gates and decay
    viz.expert_routing(moe_cap, layer=0)          # experts.py: Gemma 4 MoE, tokens x experts
    viz.AttentionExplorer(cap).widget             # explorer.py: ipywidgets
    viz.save_figure(fig, "grid")                  # grid.png and grid.svg
"""

from .capture import Capture, run_and_capture, token_labels
from .experts import expert_routing, expert_usage
from .figures import attention_grid, attention_heatmap, head_lines, head_probs, save_figure, token_strip
from .gates import gate_heatmaps
from .layer_map import layer_map
from .logit_lens import LogitLens, logit_lens, logit_lens_figure
from .pooling import crop, max_pool

__all__ = ["Capture", "run_and_capture", "token_labels", "attention_grid", "attention_heatmap", "head_lines",
           "head_probs", "save_figure", "token_strip", "gate_heatmaps", "expert_routing", "expert_usage", "layer_map",
           "LogitLens", "logit_lens", "logit_lens_figure", "crop", "max_pool", "AttentionExplorer", "explore"]


def __getattr__(name):      # the explorer imports ipywidgets: only when asked for
    if name in ("AttentionExplorer", "explore"):
        from . import explorer
        return getattr(explorer, name)
    raise AttributeError(name)
