"""RecurrentGemma (Griffin) against DeepMind's official ``recurrentgemma`` JAX model.

Tiny random models are built with the official package, saved in both official
formats (a PyTorch ``.pt`` state dict made by ``recurrentgemma.conversion`` and
an orbax Flax folder, Kaggle's layout), loaded back with ``gemma_kit.load``, and
compared with the official JAX forward pass (``ScanType.LINEAR_NATIVE``):

- "main": lru_width (40) != width (32), two attention blocks (the last block is
  one), window 8 on sequences of 48 (6 windows), a batch row with a document reset;
- "plain": the RecurrentGemma pattern (recurrent, recurrent, attention), no soft-cap and
  no embedding scale, both given to ``gemma_kit.load`` as keyword overrides; a tiny
  ``tokenizer.model`` lies beside its files, so it also generates text.

The official model is only run jitted at one shape per config (its compilation is the
slow part), and its weights come from ``jax.eval_shape`` plus NumPy, never from ``init``.
"""

import os

import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit.compile import compile_model_function, enable_jax_compilation_cache
from gemma_kit.generate import Generator
from gemma_kit.nn import cache_bytes
from gemma_kit.models.griffin.config import round_to_bfloat16
from gemma_kit.presets import PRESETS
from gemma_kit.models.griffin.rg_lru import linear_scan

import jax  # noqa: E402  the official reference model is JAX; the test set-up installs it
import recurrentgemma  # noqa: E402,F401
import torch  # noqa: E402
jnp = jax.numpy
from recurrentgemma import common  # noqa: E402
from recurrentgemma import jax as rgj  # noqa: E402
from recurrentgemma import torch as rgt  # noqa: E402
from recurrentgemma.conversion import flax_params_to_pytorch_state_dict  # noqa: E402
from tiny_gguf import tiny_tokenizer  # noqa: E402

R, A = common.TemporalBlockType.RECURRENT, common.TemporalBlockType.ATTENTION
VOCAB, WINDOW = 320, 8        # 320: the tiny SentencePiece vocabulary of tests/tiny_gguf.py
CONFIGS = {
    "main": dict(config=dict(width=32, mlp_expanded_width=48, num_heads=4, lru_width=40, block_types=(R, A, R, A),
                             embeddings_scale_by_sqrt_dim=True, logits_soft_cap=30.0),
                 overrides=dict(attention_window_size=WINDOW), seq=48),
    "plain": dict(config=dict(width=24, mlp_expanded_width=40, num_heads=2, lru_width=None, block_types=(R, R, A),
                              embeddings_scale_by_sqrt_dim=False, logits_soft_cap=0.0),
                  overrides=dict(attention_window_size=WINDOW, logits_soft_cap=0.0,
                                 embeddings_scale_by_sqrt_dim=False), seq=24),
}


def _random_params(shapes, seed):
    """Random values for every official parameter (norm scales and biases too: no path is trivial)."""
    rng = np.random.default_rng(seed)

    def value(path, leaf):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        if name.endswith("a_param"):
            return rng.uniform(-3.0, 1.0, leaf.shape)                       # decays from ~0 to ~0.95
        if name.endswith(("scale", "bias", "/b")):
            return rng.normal(0.0, 0.1, leaf.shape)
        if name.endswith("conv_1d/w"):
            return rng.normal(0.0, 0.3, leaf.shape)
        fan_in = leaf.shape[-1] if name.endswith("input_embedding") else leaf.shape[-2]
        # The blocks' output projections are strong, so that they outweigh the tied embedding
        # (which alone makes a model repeat its last token) and greedy text varies.
        strong = 6.0 if name.endswith(("ffw_down/kernel", "linear_out/kernel", "proj_final/kernel")) else 1.0
        return rng.normal(0.0, strong * fan_in ** -0.5, leaf.shape)
    return jax.tree_util.tree_map_with_path(lambda p, leaf: jnp.asarray(value(p, leaf), jnp.float32), shapes)



class Official:
    """One tiny official Griffin: its parameters, its files, and its jitted forward pass at (2, seq)."""

    def __init__(self, name, folder):
        spec = CONFIGS[name]
        self.seq, self.overrides = spec["seq"], spec["overrides"]
        self.config = rgj.GriffinConfig(vocab_size=VOCAB, attention_window_size=WINDOW,
                                        scan_type=common.ScanType.LINEAR_NATIVE, **spec["config"])
        model = rgj.Griffin(self.config, gradient_checkpointing=False)
        dummy = jnp.zeros((2, self.seq), jnp.int32)
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), dummy, dummy)["params"]
        self.params = _random_params(shapes, seed=len(name))
        self.forward = jax.jit(lambda tokens, segment_pos: model.apply(
            {"params": self.params}, tokens, segment_pos, return_cache=False)[0])

        folder = os.path.join(folder, name)
        os.makedirs(folder)
        if name == "plain":                                               # found beside the .pt / Flax folder
            tiny_tokenizer().save(os.path.join(folder, "tokenizer.model"))
        state = flax_params_to_pytorch_state_dict(self.params)
        rgt.Griffin(self.config).load_state_dict(state, strict=True)     # the official torch model reads it
        self.pt = os.path.join(folder, f"{name}.pt")
        torch.save(state, self.pt)
        import orbax.checkpoint as ocp
        self.flax = folder                                                # Kaggle's layout: <folder>/2b/ (orbax)
        ocp.PyTreeCheckpointer().save(os.path.join(folder, "2b"), self.params)

    def logits(self, tokens, segment_pos=None):
        """Official float32 logits for (2, seq) tokens; ``segment_pos`` defaults to 0, 1, 2, ..."""
        tokens = np.asarray(tokens, np.int32)
        if segment_pos is None:
            segment_pos = np.broadcast_to(np.arange(tokens.shape[1]), tokens.shape)
        return np.asarray(self.forward(jnp.asarray(tokens), jnp.asarray(segment_pos, jnp.int32)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    enable_jax_compilation_cache()          # the official program is compiled once per machine, not per backend
    folder = str(tmp_path_factory.mktemp("griffin"))
    return {name: Official(name, folder) for name in CONFIGS}


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def _reset_batch(seq, seed=0):
    """Two rows of random tokens; row 1 starts a new document at time 13 (segment_pos back to 0)."""
    tokens = np.random.default_rng(seed).integers(0, VOCAB, (2, seq)).astype(np.int32)
    segment_pos = np.stack([np.arange(seq), np.r_[np.arange(13), np.arange(seq - 13)]]).astype(np.int32)
    return tokens, segment_pos


# -- loading, config inference, parity of the logits ----------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pt", "flax"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_match_official_jax(official, name, fmt):
    ref = official[name]
    model = gemma_kit.load(getattr(ref, fmt), **ref.overrides)
    assert isinstance(model.backbone, gemma_kit.GriffinBackbone)
    assert bool(model.tokenizer) == (name == "plain")                   # logits need no tokenizer
    tokens, segment_pos = _reset_batch(ref.seq)
    forward = compile_model_function(model.backbone, model.backbone)    # one XLA program, not op by op on JAX
    ours = _numpy(forward({"token_ids": ops.convert_to_tensor(tokens),
                           "segment_pos": ops.convert_to_tensor(segment_pos)}))
    expected = ref.logits(tokens, segment_pos)
    error = np.abs(ours - expected).max()
    print(f"\n{name}/{fmt}: max |logits - official| = {error:.2e}")
    assert error < 1e-4
    np.testing.assert_allclose(model.logits(tokens[:1]), ref.logits(tokens)[:1], atol=1e-4, rtol=0)
    assert model.backbone.count_params() == model.config.num_parameters() == \
        sum(x.size for x in jax.tree_util.tree_leaves(ref.params))


def test_config_is_inferred_from_shapes(official, tmp_path):
    ref = official["main"]
    for path in (ref.pt, ref.flax, os.path.join(ref.flax, "2b")):      # Kaggle's folder, or the orbax one in it
        config = gemma_kit.read_config(path)                             # shapes only: no weight is read
        assert (config.vocab_size, config.width, config.mlp_expanded_width, config.num_heads, config.lru_width) == \
            (VOCAB, 32, 48, 4, 40)
        assert config.block_types == ("recurrent", "attention", "recurrent", "attention")
        # What shapes cannot tell takes the official defaults.
        assert (config.attention_window_size, config.logits_soft_cap, config.embeddings_scale_by_sqrt_dim) == \
            (2048, 30.0, True)
    with pytest.raises(TypeError, match="attention_window"):
        gemma_kit.load(ref.pt, attention_window=8)
    fake_gguf = tmp_path / "model.gguf"
    fake_gguf.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(TypeError, match="gguf format takes no loading options"):
        gemma_kit.load(str(fake_gguf), attention_window_size=8)
    model = gemma_kit.load(ref.pt, attention_window_size=8)
    with pytest.raises((RuntimeError, ValueError), match="no tokenizer"):
        model.generate("Hello", max_new_tokens=2)


def test_a_broken_checkpoint_names_the_tensor(official, tmp_path):
    state = torch.load(official["main"].pt, weights_only=True)
    del state["blocks.1.attention_block.proj_v.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="proj_v"):
        gemma_kit.load(str(tmp_path / "broken.pt"))


# -- generation: cached decoding, greedy tokens, constant memory ----------------------------------------------
def test_cached_decoding_matches_the_official_forward_pass(official):
    """Left-padded prompts of 2 and 13 tokens (the short one leaves pads in the convolution window),
    then 32 teacher-forced steps: the ring buffer wraps 4 times."""
    ref = official["main"]
    backbone = gemma_kit.load(ref.pt, **ref.overrides).backbone
    tokens = np.random.default_rng(1).integers(0, VOCAB, (2, ref.seq)).astype(np.int32)
    expected = ref.logits(tokens)                                       # (2, 48, vocab): each row from time 0
    lengths, prompt_len, steps = np.array([2, 13]), 16, 32
    padded = np.zeros((2, prompt_len), np.int32)
    for row, n in enumerate(lengths):
        padded[row, prompt_len - n:] = tokens[row, :n]
    start = prompt_len - lengths
    prefill = compile_model_function(backbone, backbone.prefill)
    decode = compile_model_function(backbone, backbone.decode)
    caches = backbone.init_cache(2, prompt_len + steps)
    logits, caches = prefill(ops.convert_to_tensor(padded), ops.convert_to_tensor(start), caches)
    errors = [np.abs(_numpy(logits) - expected[[0, 1], lengths - 1]).max()]
    for step in range(steps - 1):
        feed = tokens[[0, 1], lengths + step][:, None]                  # the next true token of each row
        logits, caches = decode(ops.convert_to_tensor(feed), ops.convert_to_tensor(np.int32(prompt_len + step)),
                                ops.convert_to_tensor(start), caches)
        errors.append(np.abs(_numpy(logits) - expected[[0, 1], lengths + step]).max())
    print(f"\ncached decoding: max |logits - official| = {max(errors):.2e} over {len(errors)} steps")
    assert max(errors) < 1e-4


def _official_greedy(ref, prompts, new_tokens):
    rows = [list(p) for p in prompts]
    for _ in range(new_tokens):
        tokens = np.zeros((2, ref.seq), np.int32)                       # right padding: causal, so harmless
        for r, row in enumerate(rows):
            tokens[r, :len(row)] = row
        logits = ref.logits(tokens)
        for r, row in enumerate(rows):
            row.append(int(np.argmax(logits[r, len(row) - 1])))
    return [row[len(p):] for row, p in zip(rows, prompts)]


def test_greedy_tokens_match_official(official):
    ref = official["main"]
    model = gemma_kit.load(ref.flax, **ref.overrides)
    rng = np.random.default_rng(2)
    prompts = [rng.integers(0, VOCAB, 6).tolist(), rng.integers(0, VOCAB, 11).tolist()]
    ours = model.generate_ids(prompts, max_new_tokens=24, stop_tokens=[])
    print(f"\ngreedy tokens: {ours}")
    assert ours == _official_greedy(ref, prompts, 24)
    assert all(len(set(row)) > 4 for row in ours)                      # not a degenerate repetition


def test_text_generation_with_a_tokenizer_beside_the_checkpoint(official):
    ref = official["plain"]
    model = gemma_kit.load(ref.flax, **ref.overrides)
    prompt = "hello world"
    ids = model.encode_prompt(prompt)                                   # BOS + pieces
    new_ids = model.generate_ids([ids], max_new_tokens=8, stop_tokens=[])[0]
    tokens = np.zeros((2, ref.seq), np.int32)
    tokens[:, :len(ids)] = ids
    assert new_ids[0] == int(np.argmax(ref.logits(tokens)[0, len(ids) - 1]))
    text = model.generate(prompt, max_new_tokens=8, stop_tokens=[])
    assert text == model.tokenizer.decode(new_ids) == "".join(model.stream(prompt, max_new_tokens=8, stop_tokens=[]))


def test_cache_size_does_not_grow_with_generated_tokens(official):
    ref = official["plain"]
    backbone = gemma_kit.load(ref.pt, **ref.overrides).backbone
    generator, sizes = Generator(backbone), {}
    compiled_decode = generator.decode

    def decode(ids, time, start, caches, *args, **kwargs):
        step = len(sizes.setdefault("steps", [])) + 1
        sizes["steps"].append(step)
        if step in (10, 999):                       # the cache holding 10 (1,000) generated tokens
            sizes[step] = cache_bytes(caches)
        return compiled_decode(ids, time, start, caches, *args, **kwargs)
    generator.decode = decode
    produced = list(generator.tokens([[1, 2, 3, 4, 5]], max_new_tokens=1000))
    assert len(produced) == 1000
    short = cache_bytes(backbone.init_cache(1, 16 + 10))
    c = backbone.config                                                # 2 recurrent + 1 attention block, batch 1
    expected = 2 * (c.lru_width * 4 + 3 * c.lru_width * 4) + 2 * WINDOW * c.head_dim * 4
    print(f"\ncache bytes: {short} (a 10-token run), {sizes[10]} after 10 tokens, {sizes[999]} after 1,000")
    assert sizes[10] == sizes[999] == short == expected


# -- the pieces ------------------------------------------------------------------------------------------------
def test_parallel_scan_equals_the_recurrence():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.0, 1.0, (2, 37, 5)).astype(np.float32)
    b = rng.normal(size=(2, 37, 5)).astype(np.float32)
    h0 = rng.normal(size=(2, 5)).astype(np.float32)
    h, states = h0, []
    for t in range(37):
        h = a[:, t] * h + b[:, t]
        states.append(h)
    ours, last = linear_scan(ops.convert_to_tensor(a), ops.convert_to_tensor(b), ops.convert_to_tensor(h0))
    np.testing.assert_allclose(_numpy(ours), np.stack(states, 1), atol=1e-5)
    np.testing.assert_allclose(_numpy(last), states[-1], atol=1e-5)


def test_embedding_scale_is_rounded_to_bfloat16():
    for width in (24, 32, 2560, 4096, 3000):
        assert round_to_bfloat16(width ** 0.5) == float(jnp.sqrt(width).astype(jnp.bfloat16))
    assert PRESETS["recurrent_gemma_2b_en"].config.embedding_scale == 50.5


# -- presets: gemma-kit info -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, official_count", [
    ("recurrent_gemma_2b_en", 2_682_862_080), ("recurrent_gemma_instruct_2b_en", 2_682_862_080),
    ("recurrent_gemma_9b_en", 8_579_977_216), ("recurrent_gemma_instruct_9b_en", 8_579_977_216)])
def test_preset_parameter_counts(name, official_count, capsys):
    from gemma_kit.cli import main
    config = gemma_kit.read_config(name)
    assert config.num_parameters() == official_count == PRESETS[name].official_parameters
    preset = common.Preset.RECURRENT_GEMMA_2B_V1 if "2b" in name else common.Preset.RECURRENT_GEMMA_9B_V1
    for key, value in preset.config_dict.items():
        if key == "block_types":
            value = tuple(t.name.lower() for t in value)
        if key != "scan_type":
            assert getattr(config, key) == value, key
    assert main(["info", name]) == 0
    assert f"{official_count:,}" in capsys.readouterr().out
