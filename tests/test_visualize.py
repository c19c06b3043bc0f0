"""gemma_kit.visualize: captured attention against transformers, Griffin gates recomputed, figures, explorer.

- Attention probabilities of a tiny random Gemma 3 (5 local layers with window 8, 1 global)
  equal transformers' eager ``output_attentions`` on the same weights (written with ``save_hf``)
  within 1e-5, on 24 tokens (3 windows), so local layers' zeros beyond the window are checked;
  rows sum to one, masked entries are exactly zero.
- Capturing changes neither the logits nor generation.
- Griffin: the captured gates equal those of DeepMind's official ``recurrentgemma`` JAX model on
  the same weights; the captured decay equals exp(-8 softplus(a_param) gate_a) (0 at a reset); and
  the captured gates and attention probabilities, fed through the blocks' own weights by hand,
  reproduce each block's output.
- The logit lens after the last layer is the model's own next-token distribution.
- Every figure writes PNG and SVG; long inputs are pooled or cropped and say so; the explorer
  redraws when its controls move.
"""

import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit import visualize as viz
from conftest import randomize, tiny_gemma3_config
from tiny_gguf import tiny_tokenizer

import torch  # noqa: E402  the oracle; installed by the test set-up
import transformers  # noqa: E402

SEQ = 24       # three sliding windows of 8



@pytest.fixture(scope="module")
def tiny_model():
    config = tiny_gemma3_config(rope_base_local=500.0)
    backbone = randomize(gemma_kit.GemmaBackbone(config), seed=5, scale=0.3)
    return gemma_kit.GemmaModel(backbone, tiny_tokenizer(), config)


@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(1).integers(4, 320, SEQ).astype(np.int32)


@pytest.fixture(scope="module")
def captured(tiny_model, ids):
    return viz.run_and_capture(tiny_model, ids)


def test_attention_equals_transformers_eager(tiny_model, ids, captured, tmp_path):
    tiny_model.save_hf(tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    with torch.no_grad():
        reference = theirs(torch.tensor(ids[None].astype(np.int64)), output_attentions=True).attentions
    assert len(reference) == len(captured.attention) == 6
    for layer, (ours, hf) in enumerate(zip(captured.attention, reference)):
        hf = hf.float().numpy()
        assert ours.shape == hf.shape == (1, 4, SEQ, SEQ)
        error = np.abs(ours - hf).max()
        assert error < 1e-5, f"layer {layer}: max |ours - transformers| = {error:.2e}"
        assert np.all(ours[:, :, ~captured.masks[layer][0]] == 0.0)           # masked: exactly zero
        np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)               # rows sum to one
    q, k = np.indices((SEQ, SEQ))
    beyond_window = q - k >= 8
    for layer, kind in enumerate(captured.layer_kinds):
        probs = captured.attention[layer][0]                                   # (heads, q, k)
        if kind == "local":
            assert np.all(probs[:, beyond_window] == 0.0)
        else:
            assert np.all(probs[:, beyond_window] > 0.0)                       # a global layer sees it all
    assert captured.layer_kinds == ["local"] * 5 + ["global"] and captured.windows == [8] * 5 + [None]


def test_capture_changes_nothing(tiny_model, ids, captured):
    found = {}
    plain = ops.convert_to_numpy(tiny_model.backbone(ids[None]))
    with_capture = ops.convert_to_numpy(tiny_model.backbone.call(ops.convert_to_tensor(ids[None]), capture=found))
    np.testing.assert_array_equal(plain, with_capture)
    assert len(found["attention"]) == 6
    before = tiny_model.generate_ids([list(ids[:10])], max_new_tokens=6)
    viz.run_and_capture(tiny_model, ids)
    assert tiny_model.generate_ids([list(ids[:10])], max_new_tokens=6) == before
    np.testing.assert_allclose(captured.hidden[-1], ops.convert_to_numpy(found["hidden"][-1]), atol=1e-6)


def test_logit_lens_ends_at_the_models_prediction(tiny_model, ids, captured):
    lens = viz.logit_lens(captured, position=10, top_k=3)
    logits = tiny_model.logits(ids)[0, 10].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    assert lens.token_ids.shape == (6, 3)
    assert list(lens.token_ids[-1]) == list(np.argsort(-probs)[:3])
    np.testing.assert_allclose(lens.probs[-1], probs[lens.token_ids[-1]], rtol=1e-4)
    assert np.all(np.diff(lens.probs, axis=1) <= 0)                            # sorted, best first
    assert lens.tokens[-1][0] == tiny_model.tokenizer.id_to_token(int(lens.token_ids[-1, 0])).replace("▁", " ")
    with pytest.raises(ValueError, match="position 24 is outside"):
        viz.logit_lens(captured, position=24)


def test_bad_inputs_are_named(tiny_model, captured):
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 320\)"):
        viz.run_and_capture(tiny_model, [5, 400])
    with pytest.raises(ValueError, match="Text needs a model with a tokenizer"):
        viz.run_and_capture(tiny_model.backbone, "hello")
    with pytest.raises(ValueError, match="layer 9 does not exist"):
        viz.attention_heatmap(captured, 9)
    with pytest.raises(ValueError, match="head must be 'mean' or an integer"):
        viz.head_probs(captured, 0, head=7)
    with pytest.raises(ValueError, match="no RG-LRU gates"):
        viz.gate_heatmaps(captured, 0)
    with pytest.raises(ValueError, match="segment_pos has 3 entries for 2 tokens"):
        viz.run_and_capture(tiny_model, [5, 6], segment_pos=[0, 1, 2])


def test_segment_pos_separates_documents_in_every_family(tiny_model):
    """Gemma shares the backbone skeleton with Griffin, so packed documents work for it too:
    no query attends across a document start, and each document reads as if it were alone."""
    ids = np.arange(10, 22, dtype=np.int32)[None]                         # two documents of 6 tokens
    cap = viz.run_and_capture(tiny_model, ids, segment_pos=[list(range(6)) * 2])
    for probs in cap.attention:
        assert not probs[0, :, 6:, :6].any()                              # the second never sees the first
    alone = viz.run_and_capture(tiny_model, ids[:, 6:])
    np.testing.assert_allclose(cap.hidden[-1][0, 6:], alone.hidden[-1][0], atol=1e-4, rtol=1e-4)


# -- Griffin --------------------------------------------------------------------------------------
class OfficialGriffin:
    """A tiny random model of DeepMind's ``recurrentgemma`` (JAX), and the same weights in gemma_kit,
    loaded from an official-format ``.pt`` file: blocks (recurrent, recurrent, attention), window 4."""

    def __init__(self, folder):
        import jax
        from recurrentgemma import common, jax as rgj
        from recurrentgemma.conversion import flax_params_to_pytorch_state_dict
        from test_griffin import _random_params

        R, A = common.TemporalBlockType.RECURRENT, common.TemporalBlockType.ATTENTION
        config = rgj.GriffinConfig(vocab_size=64, width=16, mlp_expanded_width=24, num_heads=2, lru_width=20,
                                   block_types=(R, R, A), embeddings_scale_by_sqrt_dim=True, logits_soft_cap=30.0,
                                   attention_window_size=4, scan_type=common.ScanType.LINEAR_NATIVE)
        model = rgj.Griffin(config, gradient_checkpointing=False)
        dummy = jax.numpy.zeros((1, 12), jax.numpy.int32)
        self.params = _random_params(jax.eval_shape(model.init, jax.random.PRNGKey(0), dummy, dummy)["params"], 7)
        # flax's capture_intermediates keeps every sub-layer's output, the gate layers' among them.
        self.intermediates = jax.jit(lambda tokens, segment_pos: model.apply(
            {"params": self.params}, tokens, segment_pos, return_cache=False, capture_intermediates=True,
            mutable=["intermediates"])[1]["intermediates"])
        torch.save(flax_params_to_pytorch_state_dict(self.params), folder / "tiny.pt")
        self.backbone = gemma_kit.load(str(folder / "tiny.pt"), attention_window_size=4).backbone


@pytest.fixture(scope="module")
def official_griffin(tmp_path_factory):
    return OfficialGriffin(tmp_path_factory.mktemp("griffin"))


@pytest.fixture(scope="module")
def griffin(official_griffin):
    return official_griffin.backbone


def test_griffin_gates_equal_the_official_recurrentgemma(official_griffin):
    import jax
    tokens = np.random.default_rng(4).integers(0, 64, (1, 12)).astype(np.int32)
    theirs = official_griffin.intermediates(jax.numpy.asarray(tokens), jax.numpy.arange(12)[None])
    cap = viz.run_and_capture(official_griffin.backbone, tokens)
    sigmoid = lambda z: 1 / (1 + np.exp(-np.asarray(z, np.float64)))          # noqa: E731
    for block in (0, 1):
        lru = theirs[f"blocks.{block}"]["recurrent_block"]["rg_lru"]
        gate_x, gate_a = (sigmoid(lru[name]["__call__"][0]) for name in ("input_gate", "a_gate"))
        a_param = np.asarray(official_griffin.params[f"blocks.{block}"]["recurrent_block"]["rg_lru"]["a_param"])
        decay = np.exp(-8.0 * gate_a * np.log1p(np.exp(a_param.astype(np.float64))))
        decay[:, 0] = 0.0                                                      # position 0: a document start
        np.testing.assert_allclose(cap.gates["input_gate"][block], gate_x, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cap.gates["a_gate"][block], gate_a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cap.gates["decay"][block], decay, rtol=1e-5, atol=1e-6)


def test_griffin_gates_and_attention_reproduce_each_block(griffin):
    ids = np.random.default_rng(3).integers(0, 64, (1, 14)).astype(np.int32)
    segment_pos = np.array([list(range(8)) + list(range(6))], np.int32)        # a second document at step 8
    cap = viz.run_and_capture(griffin, ids, segment_pos=segment_pos)
    found = {"attention": cap.attention, "mask": cap.masks, "hidden": cap.hidden, **cap.gates}
    n = lambda t: np.asarray(ops.convert_to_numpy(t), np.float64)              # noqa: E731
    x = n(griffin.token_embedding(ids)) * griffin.config.embedding_scale       # (1, seq, width)
    for i, block in enumerate(griffin.blocks):
        normed = block.temporal_pre_norm(x.astype("float32"))
        if block.layer_type == "recurrent":
            rec = block.recurrent_block
            u = n(rec.conv_1d(rec.linear_x(normed), segment_pos)[0])[0]        # (seq, lru_width)
            gate_x, gate_a, decay = (n(found[k][i])[0] for k in ("input_gate", "a_gate", "decay"))
            softplus = np.log1p(np.exp(n(rec.rg_lru.a_param)))
            expected = np.exp(-8.0 * gate_a * softplus)
            expected[segment_pos[0] == 0] = 0.0                                # the state resets
            np.testing.assert_allclose(decay, expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(gate_a, 1 / (1 + np.exp(-n(rec.rg_lru.a_gate(u[None].astype("float32")))[0])),
                                       rtol=1e-5)
            h, states = np.zeros(u.shape[1]), []
            for t in range(u.shape[0]):                                        # the recurrence, one step at a time
                scale = 1.0 if segment_pos[0, t] == 0 else np.sqrt(1 - decay[t] ** 2)
                h = decay[t] * h + scale * gate_x[t] * u[t]
                states.append(h)
            y = n(ops.gelu(rec.linear_y(normed), approximate=True))[0]
            mixed = n(rec.linear_out((np.array(states) * y)[None].astype("float32")))
            assert found["attention"][i] is None and found["mask"][i] is None
        else:
            att = block.attention_block
            probs, mask = found["attention"][i], found["mask"][i][0]           # (1, heads, seq, seq), (seq, seq)
            np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
            assert np.all(probs[0][:, ~mask] == 0.0)
            q, k = np.indices(mask.shape)
            assert not mask[q - k > 4].any() and mask[(q - k == 4) & (q < 8)].all()   # window + 1 keys
            v = n(att.proj_v(normed))[0]                                       # (seq, head_dim)
            heads = np.einsum("hts,sd->thd", probs[0], v).reshape(1, ids.shape[1], -1)
            mixed = n(att.proj_final(heads.astype("float32")))
            assert found["decay"][i] is None
        h = x + mixed
        x = h + n(block.mlp_block(block.channel_pre_norm(h.astype("float32"))))
        np.testing.assert_allclose(x, n(found["hidden"][i]), rtol=1e-4, atol=1e-4)


def test_griffin_capture_and_figures(griffin, tmp_path):
    cap = viz.run_and_capture(griffin, np.arange(30) % 64)
    assert cap.layer_kinds == ["recurrent", "recurrent", "attention"]
    assert cap.windows == [None, None, 5] and cap.attention_layers == [2] and cap.recurrent_layers == [0, 1]
    assert cap.gates["decay"][0].shape == (1, 30, 20)
    assert np.all(cap.gates["decay"][0][0, 0] == 0.0) and np.all(cap.gates["decay"][0][0, 1:] > 0.0)
    fig = viz.gate_heatmaps(cap, 1)
    assert "Block 1 (recurrent)" in fig._suptitle.get_text()
    for name, figure in (("gates", fig), ("map", viz.layer_map(cap)), ("heat", viz.attention_heatmap(cap, 2))):
        png, svg = viz.save_figure(figure, tmp_path / name)
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and "<svg" in open(svg).read(2000)
    with pytest.raises(ValueError, match="block 2 is not a recurrent block"):
        viz.gate_heatmaps(cap, 2)
    with pytest.raises(ValueError, match="layer 0 is a recurrent block without attention"):
        viz.attention_heatmap(cap, 0)
    explorer = viz.AttentionExplorer(cap)
    assert explorer.layer.options == (("2", 2),)


# -- figures and explorer -------------------------------------------------------------------------
def test_figures_export_png_and_svg(captured, tmp_path):
    figures = {"grid": viz.attention_grid(captured), "lines": viz.head_lines(captured, 5, head=1, query=20),
               "map": viz.layer_map(captured), "heat": viz.attention_heatmap(captured, 0, masked_view=True),
               "lens": viz.logit_lens_figure(viz.logit_lens(captured)), "strip": viz.token_strip(captured, 5, 0, 20)}
    for name, fig in figures.items():
        png, svg = viz.save_figure(fig, tmp_path / name)
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", name
        assert "<svg" in open(svg).read(2000), name


def test_long_inputs_are_pooled_and_cropped_and_say_so(tiny_model):
    cap = viz.run_and_capture(tiny_model, np.arange(4, 304))                  # 300 tokens
    ax = viz.attention_heatmap(cap, 5, max_cells=100).axes[0]
    assert "max-pooled in 3x3 blocks (300 tokens)" in ax.get_title()
    assert ax.images[0].get_array().shape == (100, 100)
    lines = viz.head_lines(cap, 0, head=0, query=150, length=30).axes[0]
    assert "tokens 135..164 of 300 shown (cropped)" in lines.get_title()
    pooled, f = viz.max_pool(np.arange(25.0).reshape(5, 5), 2)
    assert f == 3 and pooled.tolist() == [[12.0, 14.0], [22.0, 24.0]]         # max of each block, partial edges


def test_explorer_redraws_when_controls_move(captured):
    explorer = viz.AttentionExplorer(captured)
    first = explorer.image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and explorer.render_seconds > 0
    explorer.layer.value = 5
    assert explorer.image.value != first
    after_layer = explorer.image.value
    explorer.view.value = "window-masked"
    explorer.view.value = "raw"
    assert explorer.image.value == after_layer                                 # same controls, same picture
    explorer.tokens.value = 20                                                 # click a token
    assert explorer.position.value == 20 and explorer.image.value != after_layer
    assert 20 in [value for _, value in explorer.tokens.options]
    explorer.layer.value = 0
    masked = explorer.image.value
    explorer.view.value = "window-masked"
    assert explorer.image.value != masked
    assert "24 tokens, 4 heads" in explorer.status.value
