"""Speculative decoding (``gemma_kit/speculative.py``, ``drafting.py``) gives the target model's own output.

Greedy: token for token what plain greedy ``generate`` gives, with prompt lookup and with a draft model, on
a tiny Gemma 3 (sliding window 8: the rings wrap) and a tiny Griffin (a recurrent state, rolled back by
recomputing). The stats show drafts both accepted and rejected. A cache rolled back after verify passes
gives the full forward pass's logits, and a ring of exactly the window would not. Sampling: the
accept/reject rule keeps the target's distribution (a chi-square test on fixed p and q, then end to end
on a tiny model with a draft model that often disagrees).

Compiling dominates the time here, so every cache has the shapes a speculative ``generate`` of PROMPT
gives (a prompt padded to 32, 128 steps, chunks of ``max_draft + 1``) and the compiled steps are shared;
the draft models have their target's shapes, so JAX's compilation cache serves their programs.
"""

import keras
import numpy as np
import pytest
from keras import ops

import gemma_kit
from gemma_kit.drafting import DraftModel, PromptLookup
from gemma_kit.models.gemma.config import gemma3_layer_types
from gemma_kit.models.griffin import GriffinConfig, griffin_block_types
from gemma_kit.sampling import sample
from gemma_kit.speculative import RollbackCache, accept_sampled, probabilities
from conftest import randomize, tiny_gemma3_config

PHRASE = [272, 205, 165, 89, 101, 16, 27, 9, 59]
PROMPT = [2] + PHRASE + PHRASE + PHRASE[:8]                                      # repeated n-grams, 27 ids
NEW = 30
GEMMA3 = tiny_gemma3_config(num_layers=3, layer_types=gemma3_layer_types(3, pattern=3))   # local, local, global
GRIFFIN = GriffinConfig(vocab_size=320, width=32, mlp_expanded_width=64, num_heads=4, lru_width=48,
                        block_types=griffin_block_types(3), attention_window_size=6, name="tiny_griffin")
# family: (backbone, seed, scale, max_draft, nudge). Weights whose greedy text mixes runs, repeats and new
# tokens; Griffin drafts 2 (each shorter recompute after a rejection is one more compiled shape); a draft
# model has the target's weights moved by N(0, nudge): it mostly agrees.
FAMILIES = {"gemma3": (lambda: gemma_kit.GemmaBackbone(GEMMA3, random_init=False), 3, 0.15, 4, 0.05),
            "griffin": (lambda: gemma_kit.GriffinBackbone(GRIFFIN, random_init=False), 2, 0.3, 2, 0.075)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py


def _model(family, draft=False):
    """A tiny GemmaModel; ``draft``: every weight moved a little, a draft model that mostly agrees."""
    make, seed, scale, _, nudge = FAMILIES[family]
    backbone = randomize(make(), seed=seed, scale=scale)
    rng = np.random.default_rng(99)
    for variable in backbone.weights if draft else []:
        variable.assign(ops.convert_to_numpy(variable) + rng.normal(0.0, nudge, variable.shape).astype("float32"))
    return gemma_kit.GemmaModel(backbone, None, backbone.config)


@pytest.fixture(scope="module")
def models():
    return {family: _model(family) for family in FAMILIES}


@pytest.fixture(scope="module")
def drafts():
    """{family: a draft model of nudged weights}, built on first use."""
    class Drafts(dict):
        def __missing__(self, family):
            self[family] = _model(family, draft=True)
            return self[family]
    return Drafts()


@pytest.fixture(scope="module")
def plain(models):
    """{family: plain greedy ids}, computed on first use."""
    class Plain(dict):
        def __missing__(self, family):
            self[family] = models[family].generate_ids([PROMPT], NEW, stop_tokens=[])
            return self[family]
    return Plain()


def _full_logits(model, ids, length=96):
    """(seq, vocab) from one pass over ``ids`` padded to ``length`` tokens on the right (causal: the padding is
    never seen), so each model compiles one shape. Compiled on JAX (slow op by op), eager elsewhere."""
    assert len(ids) <= length
    padded = np.asarray([list(ids) + [0] * (length - len(ids))], np.int32)
    if keras.config.backend() == "jax":
        return model.logits(padded)[0, :len(ids)]
    return np.asarray(ops.convert_to_numpy(model.backbone(padded)))[0, :len(ids)]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_extend_all_logits_equals_the_full_forward_pass(models, family):
    chunk = FAMILIES[family][3] + 1
    live = RollbackCache(models[family], PROMPT, 128, chunk)
    logits = live.feed(list(range(40, 40 + chunk)), all_logits=True, may_cut=True)   # as a verify pass does
    assert logits.shape == (chunk, 320)
    full = _full_logits(models[family], PROMPT + list(range(40, 40 + chunk)))[len(PROMPT):]
    np.testing.assert_allclose(logits, full, atol=1e-4, rtol=1e-4)


def _verify_and_roll_back(model, chunk, cache_chunk, keeps):
    """Feed chunks (as verify passes) to a RollbackCache whose rings allow ``cache_chunk``, keep a prefix of each;
    the largest difference between the kept positions' logits and the full forward pass over the kept tokens."""
    live = RollbackCache(model, PROMPT, 128, cache_chunk)
    rng, seq, outputs = np.random.default_rng(5), list(PROMPT), []
    for keep in keeps:
        drafted = rng.integers(4, 320, size=chunk).tolist()
        outputs.append(live.feed(drafted, all_logits=True, may_cut=True)[:keep])       # (keep, vocab)
        live.keep(len(seq) + keep)
        seq += drafted[:keep]
    full = _full_logits(model, seq)[len(PROMPT):]
    return np.abs(np.concatenate(outputs) - full).max()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_cache_rolled_back_after_verify_passes_matches_the_full_forward_pass(models, family):
    chunk = FAMILIES[family][3] + 1
    keeps = np.random.default_rng(1).integers(1, chunk + 1, size=12)         # rejections of every length
    assert _verify_and_roll_back(models[family], chunk, chunk, keeps) < 1e-4   # the rings wrap many times


@pytest.mark.once
def test_a_ring_of_exactly_the_window_is_not_enough_to_roll_back(models):
    # Writing t..t+4 overwrote slots the next query still sees; the extra chunk - 1 slots prevent that.
    assert _verify_and_roll_back(models["gemma3"], 5, 1, [3] * 8) > 1e-3


@pytest.mark.parametrize("family", list(FAMILIES))
def test_greedy_prompt_lookup_equals_plain_greedy(models, plain, family):
    model = models[family]
    lookup = PromptLookup(ngram=3, max_draft=FAMILIES[family][3])
    assert model.generate_ids([PROMPT], NEW, stop_tokens=[], speculative=lookup) == plain[family]
    stats = model.last_speculation
    assert 0 < stats.accepted < stats.drafted and stats.new_tokens == NEW      # accepted AND rejected
    assert stats.tokens_per_call > 1.0 and stats.acceptance_rate == stats.accepted / stats.drafted


@pytest.mark.parametrize("family", list(FAMILIES))
def test_greedy_with_a_draft_model_equals_plain_greedy(models, drafts, plain, family):
    draft = DraftModel(drafts[family], max_draft=FAMILIES[family][3])
    assert models[family].generate_ids([PROMPT], NEW, stop_tokens=[], speculative=draft) == plain[family]
    stats = models[family].last_speculation
    assert 0 < stats.accepted < stats.drafted


def test_stop_tokens_and_max_new_tokens_as_plain_greedy(models, plain):
    model, free = models["gemma3"], plain["gemma3"][0]
    stop = free[13]                                      # the text ends at its first occurrence
    with_stop = model.generate_ids([PROMPT], NEW, stop_tokens=[stop])
    assert with_stop == [free[:free.index(stop)]]
    assert model.generate_ids([PROMPT], NEW, stop_tokens=[stop], speculative="prompt_lookup") == with_stop
    assert model.last_speculation.new_tokens == len(with_stop[0]) + 1          # the stop token, produced
    for limit in (1, 2, 7):                              # a verify pass never runs past max_new_tokens
        assert model.generate_ids([PROMPT], limit, stop_tokens=[], speculative="prompt_lookup") == [free[:limit]]
        assert model.last_speculation.new_tokens == limit


def test_prompt_lookup_copies_what_followed_the_last_ngram():
    lookup = PromptLookup(ngram=3, max_draft=3)
    assert lookup.lookup([5, 1, 2, 3, 7, 8, 9, 1, 2, 3, 4, 0, 1, 2, 3], 3) == [4, 0, 1]     # the latest match
    assert lookup.lookup([5, 1, 2, 3, 7, 8, 9, 6, 2, 3], 3) == [7, 8, 9]                  # fell back to n = 2
    assert lookup.lookup([5, 6, 7], 3) == []                                              # no match: no draft
    assert lookup.lookup([4, 4, 4, 4, 4, 4], 3) == [4, 4, 4]    # in a run, the latest match with 3 to copy


@pytest.mark.parametrize("sampler, options", [("greedy", {}), ("temperature", dict(temperature=0.7)),
                                              ("top_k", dict(top_k=5)), ("top_p", dict(top_p=0.8))])
def test_probabilities_are_what_sample_draws_from(sampler, options):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(8, 50)) * 3).astype(np.float32)
    p = probabilities(logits, sampler, **options)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    for _ in range(30):                                  # Gumbel-max on log p picks what sample() picks
        noise = rng.gumbel(size=logits.shape).astype(np.float32)
        ours = np.argmax(log_p + noise, axis=-1)
        np.testing.assert_array_equal(ops.convert_to_numpy(sample(logits, sampler, noise=noise, **options)), ours)


def chi2_999(dof):
    """The chi-square distribution's 0.999 quantile (Wilson-Hilferty; within 1% for dof >= 3): a correct
    sampler fails the test 1 time in 1000 (15 dof: 37.8, scipy says 37.7)."""
    return dof * (1 - 2 / (9 * dof) + 3.090 * np.sqrt(2 / (9 * dof))) ** 3


def _chi_square(counts, expected_probs):
    """Pearson's statistic over cells with >= 5 expected draws (the rest pooled), and its degrees of freedom."""
    expected = expected_probs * counts.sum()
    big = expected >= 5
    observed = np.append(counts[big], counts[~big].sum())
    expected = np.append(expected[big], expected[~big].sum())
    keep = expected > 0
    return (((observed - expected) ** 2)[keep] / expected[keep]).sum(), int(keep.sum()) - 1


@pytest.mark.once                                        # NumPy only: the same on every backend
def test_the_accept_reject_rule_keeps_the_target_distribution():
    """The first two tokens after a prefix, over 4 tokens: target p, drafter q that disagrees (or a point mass)."""
    rng, vocab, draws = np.random.default_rng(1), 4, 4000
    p0, p1 = rng.dirichlet(np.ones(vocab)), rng.dirichlet(np.ones(vocab), size=vocab)   # p1[a]: after a
    q0, q1 = rng.dirichlet(np.ones(vocab) * 0.3), rng.dirichlet(np.ones(vocab) * 0.3, size=vocab)
    target = p0[:, None] * p1                                                             # (4, 4) joint
    assert 0.5 * np.abs(q0[:, None] * q1 - target).sum() > 0.3       # accepting every draft would fail the test
    anything = np.full(vocab, 1.0 / vocab)
    for point_mass in (False, True):                                 # a draft model; prompt lookup
        counts = np.zeros((vocab, vocab))
        for _ in range(draws):
            d1 = 2 if point_mass else rng.choice(vocab, p=q0)
            d2 = 3 if point_mass else rng.choice(vocab, p=q1[d1])
            q = None if point_mass else np.stack([q0, q1[d1]])
            j, y = accept_sampled(np.stack([p0, p1[d1], anything]), q, [d1, d2], rng)
            tokens = [d1, d2][:j] + [y]
            if len(tokens) < 2:                                      # a second verify pass, one drafted token
                d = 1 if point_mass else rng.choice(vocab, p=q1[y])
                j, y2 = accept_sampled(np.stack([p1[y], anything]), None if point_mass else q1[y][None], [d], rng)
                tokens.append(d if j else y2)
            counts[tokens[0], tokens[1]] += 1
        statistic, dof = _chi_square(counts.ravel(), target.ravel())
        assert statistic < chi2_999(dof), f"point_mass={point_mass}: chi-square {statistic:.1f} with {dof} dof"


@pytest.mark.once
def test_speculative_sampling_end_to_end_keeps_the_target_distribution(models, drafts):
    """The first three tokens sampled (top-k 3) with a draft model of nudged weights, against the exact joint."""
    model, draft, draws = models["gemma3"], DraftModel(drafts["gemma3"], max_draft=4), 300
    options = dict(sampler="top_k", top_k=3)

    def p(ids):                                                      # (vocab,): the target's next-token law
        return probabilities(_full_logits(model, PROMPT + ids)[-1:], **options)[0]

    target = {(a, b, c): p([])[a] * p([a])[b] * p([a, b])[c] for a in np.flatnonzero(p([]))
              for b in np.flatnonzero(p([a])) for c in np.flatnonzero(p([a, b]))}    # 27 sequences
    counts, drafted, accepted = dict.fromkeys(target, 0), 0, 0
    for seed in range(draws):   # 4 new tokens: the 2nd and 3rd come from one verify pass of 2 drafted tokens
        counts[tuple(model.generate_ids([PROMPT], 4, stop_tokens=[], speculative=draft, seed=seed,
                                        **options)[0][:3])] += 1
        drafted, accepted = drafted + model.last_speculation.drafted, accepted + model.last_speculation.accepted
    assert 0.2 < accepted / drafted < 0.8                            # both sides of the rule, often
    statistic, dof = _chi_square(np.array(list(counts.values()), float), np.array(list(target.values())))
    assert statistic < chi2_999(dof), f"chi-square {statistic:.1f} with {dof} dof"


def test_clear_errors(models):
    model = models["gemma3"]
    with pytest.raises(ValueError, match="batch 1"):
        model.generate_ids([PROMPT, PROMPT], 4, stop_tokens=[], speculative="prompt_lookup")
    config = tiny_gemma3_config(vocab_size=256)
    other = gemma_kit.GemmaModel(gemma_kit.GemmaBackbone(config, random_init=False), None, config)
    with pytest.raises(ValueError, match="vocabulary of 256 tokens but the target 'tiny_gemma3' has 320"):
        model.generate_ids([PROMPT], 4, stop_tokens=[], speculative=other)
    for bad in (lambda: PromptLookup(max_draft=0), lambda: DraftModel(model, max_draft=0)):
        with pytest.raises(ValueError, match="max_draft must be an integer >= 1"):
            bad()
    with pytest.raises(ValueError, match="speculative= takes 'prompt_lookup'"):
        model.generate_ids([PROMPT], 4, stop_tokens=[], speculative="ngrams")
    with pytest.raises(ValueError, match="needs the cache"):
        model.generate_ids([PROMPT], 4, stop_tokens=[], speculative="prompt_lookup", use_cache=False)
