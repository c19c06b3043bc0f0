"""gemma_kit.visualize on Gemma 4: attention and expert routing against transformers, figures, explorer.

Tiny random models written by transformers (``gemma4_tiny.py``), 24 tokens (three sliding windows of 8):

- the attention probabilities of every layer equal transformers' eager ``output_attentions``: sliding
  and global layers (wider heads on the global ones), the layers that borrow keys and values (E2B);
- the routing weights captured under ``"experts"`` (26B-A4B-like ``moe``) equal what transformers'
  router gives (``output_router_logits``: softmax, top-k, renormalised, times ``per_expert_scale``);
- the logit lens after the last layer is transformers' own next-token distribution;
- the figures (the new tokens x experts map included) and the explorer are built on Gemma 4 and show
  the captured numbers.
"""

import numpy as np
import pytest
import torch

from gemma_kit import load
from gemma_kit import visualize as viz
from gemma4_tiny import VOCAB, WINDOW, save_hf

SEQ = 24


@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(1).integers(4, VOCAB, SEQ).astype(np.int32)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ids):
    """{variant: (our capture, transformers' output with attentions and router probabilities)}."""
    out = {}
    for seed, variant in enumerate(("e2b", "moe")):
        folder = str(tmp_path_factory.mktemp(variant))
        theirs = save_hf(folder, variant, seed=seed)
        with torch.no_grad():
            reference = theirs(torch.tensor(ids[None].astype(np.int64)), output_attentions=True,
                               output_router_logits=variant == "moe")
        reference.per_expert_scale = [layer.router.per_expert_scale.detach().numpy()
                                      for layer in theirs.model.layers] if variant == "moe" else None
        out[variant] = viz.run_and_capture(load(folder), ids), reference
    return out


@pytest.mark.parametrize("variant", ["e2b", "moe"])
def test_every_layer_attention_equals_transformers(runs, variant):
    cap, theirs = runs[variant]
    config = cap.backbone.config
    assert len(cap.attention) == len(theirs.attentions) == config.num_layers
    for layer, (ours, hf) in enumerate(zip(cap.attention, theirs.attentions)):
        assert ours.shape == hf.shape == (1, 4, SEQ, SEQ)                      # global heads are wider: same shape
        error = np.abs(ours - hf.float().numpy()).max()
        assert error < 1e-4, f"{variant} layer {layer} ({config.kv_sharing(layer)}): max |ours - hf| = {error:.1e}"
        assert np.all(ours[:, :, ~cap.masks[layer][0]] == 0.0)
        np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)
    q, k = np.indices((SEQ, SEQ))
    for layer, kind in enumerate(cap.layer_kinds):
        seen = cap.attention[layer][0][:, q - k >= WINDOW]
        assert np.all(seen == 0.0) if kind == "local" else np.all(seen > 0.0)
    assert cap.windows == [WINDOW if kind == "local" else None for kind in cap.layer_kinds]
    if variant == "e2b":
        assert [config.kv_sharing(i) for i in range(4, 7)] == ["reuse"] * 3     # borrowers are captured too
        assert cap.experts == [None] * 7 and cap.expert_layers == [] and cap.gates == {}


def test_routing_weights_equal_the_transformers_router(runs):
    cap, theirs = runs["moe"]
    k = cap.backbone.config.num_experts_per_token
    assert cap.expert_layers == list(range(6)) and cap.gates == {}
    for layer, (probs, scale) in enumerate(zip(theirs.router_logits, theirs.per_expert_scale)):
        probs = probs.float().numpy()                                          # (tokens, experts) softmax
        top = np.argsort(-probs, axis=-1)[:, :k]
        weights = np.take_along_axis(probs, top, -1)
        expected = np.zeros_like(probs)
        np.put_along_axis(expected, top, weights / weights.sum(-1, keepdims=True) * scale[top], -1)
        ours = cap.experts[layer][0]                                           # (seq, experts)
        np.testing.assert_allclose(ours, expected, atol=1e-5, err_msg=f"layer {layer}")
        assert np.all((ours != 0).sum(-1) == k)


@pytest.mark.parametrize("variant", ["e2b", "moe"])
def test_logit_lens_ends_at_transformers_prediction(runs, variant):
    cap, theirs = runs[variant]
    lens = viz.logit_lens(cap, position=SEQ - 1, top_k=3)
    logits = theirs.logits[0, -1].double().numpy()
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    assert lens.token_ids.shape == (cap.num_layers, 3)
    assert list(lens.token_ids[-1]) == list(np.argsort(-probs)[:3])
    np.testing.assert_allclose(lens.probs[-1], probs[lens.token_ids[-1]], rtol=1e-4)


def test_figures_show_gemma4_attention_and_expert_routing(runs, tmp_path):
    cap, _ = runs["moe"]
    routing = viz.expert_routing(cap, 2)
    shown = routing.axes[0].images[0].get_array()
    weights = cap.experts[2][0]
    np.testing.assert_allclose(np.nan_to_num(np.ma.filled(shown, np.nan)), weights, atol=1e-7)   # the weights
    assert np.isnan(np.ma.filled(shown, np.nan)[weights == 0]).all()            # unchosen cells left blank
    assert "layer 2: the 2 of 4 experts each token is routed to" in routing.axes[0].get_title()
    usage = viz.expert_usage(cap)
    np.testing.assert_allclose(usage.axes[0].images[0].get_array(),
                               np.stack([(cap.experts[i][0] > 0).mean(0) for i in range(6)]))
    heat = viz.attention_heatmap(cap, 5, head=1, masked_view=True)             # a global layer, 16-wide heads
    np.testing.assert_allclose(np.ma.filled(heat.axes[0].images[0].get_array(), 0.0), cap.attention[5][0, 1],
                               atol=1e-7)
    assert "layer 5 (global)" in heat.axes[0].get_title()
    figures = {"routing": routing, "usage": usage, "heat": heat, "grid": viz.attention_grid(cap),
               "lines": viz.head_lines(cap, 4, head=0, query=20), "map": viz.layer_map(cap),
               "strip": viz.token_strip(cap, 5, "mean", 20), "lens": viz.logit_lens_figure(viz.logit_lens(cap))}
    for name, fig in figures.items():
        png, svg = viz.save_figure(fig, tmp_path / name)
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and "<svg" in open(svg).read(2000), name

    e2b, _ = runs["e2b"]
    viz.attention_heatmap(e2b, 6)                                              # a layer that borrows keys/values
    with pytest.raises(ValueError, match="This capture has no experts"):
        viz.expert_routing(e2b, 0)
    with pytest.raises(ValueError, match=r"layer 9 has no experts; layers with experts: \[0, 1, 2, 3, 4, 5\]"):
        viz.expert_routing(cap, 9)
    with pytest.raises(ValueError, match="no RG-LRU gates"):
        viz.gate_heatmaps(cap, 0)


def test_explorer_on_gemma4_names_the_selected_tokens_experts(runs):
    cap, _ = runs["moe"]
    explorer = viz.AttentionExplorer(cap)
    assert explorer.layer.options == tuple((str(i), i) for i in range(6))
    first = explorer.image.value
    explorer.layer.value = 5
    explorer.tokens.value = 20                                                 # click a token
    assert explorer.image.value != first and "24 tokens, 4 heads" in explorer.status.value
    row = cap.experts[5][0, 20]
    chosen = np.argsort(-row)[:2]
    assert f"token 20 goes to experts {chosen[0]} ({row[chosen[0]]:.2f}), {chosen[1]} ({row[chosen[1]]:.2f})" \
        in explorer.status.value
    plain = viz.AttentionExplorer(runs["e2b"][0])
    assert "goes to experts" not in plain.status.value and len(plain.layer.options) == 7
