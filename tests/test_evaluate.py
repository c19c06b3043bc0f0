"""gemma_kit.evaluate: log-likelihood scoring, multiple choice, perplexity, code execution, pass@k, intervals."""

import importlib
import importlib.util
import itertools
import math
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import gemma_kit
from gemma_kit import data, evaluate
from conftest import randomize, tiny_gemma3_config

ROOT = Path(__file__).resolve().parent.parent


class CharTokenizer:
    """One token per character (ids 4..323 folded into the tiny model's 320-word vocabulary)."""
    bos_id, pad_id = 2, 0

    def encode(self, text):
        return [4 + ord(c) % 316 for c in text]


class TinyModel:
    def __init__(self):
        self.backbone = randomize(gemma_kit.GemmaBackbone(tiny_gemma3_config()), seed=3, scale=0.3)
        self.tokenizer = CharTokenizer()


@pytest.fixture(scope="module")
def tiny():
    return TinyModel()


CONTEXTS = ["def add(a, b):", "x", "the quick brown fox jumps over"]
CONTINUATIONS = [" return a + b", " = 1", " the lazy dog"]


def reference_logprobs(model, context, continuation):
    """log_softmax of the full forward pass, read at the positions before each continuation token."""
    tok = model.tokenizer
    ids = [tok.bos_id] + tok.encode(context) + tok.encode(continuation)
    logits = np.asarray(keras.ops.convert_to_numpy(model.backbone(np.array([ids], np.int32)))[0], np.float64)
    logsoftmax = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)                                          # (seq, vocab)
    n = len(tok.encode(continuation))
    return logsoftmax[np.arange(len(ids) - n - 1, len(ids) - 1), ids[len(ids) - n:]]


def test_continuation_logprob_is_the_sum_of_next_token_log_softmax(tiny):
    scored = evaluate.token_logprobs(tiny, CONTEXTS, CONTINUATIONS, batch_size=4)
    for got, context, continuation in zip(scored, CONTEXTS, CONTINUATIONS):
        np.testing.assert_allclose(got, reference_logprobs(tiny, context, continuation), atol=2e-5)
    totals = evaluate.continuation_logprob(tiny, CONTEXTS, CONTINUATIONS)
    np.testing.assert_allclose(totals, [s.sum() for s in scored], atol=1e-9)


def test_batched_equals_unbatched_and_padding_changes_nothing(tiny):
    batched = evaluate.token_logprobs(tiny, CONTEXTS, CONTINUATIONS, batch_size=3)    # rows padded to the longest
    alone = [evaluate.token_logprobs(tiny, [c], [t], batch_size=1)[0] for c, t in zip(CONTEXTS, CONTINUATIONS)]
    for got, expected in zip(batched, alone):
        np.testing.assert_allclose(got, expected, atol=2e-5)
    # Beside a long neighbour the short row gets ~100 pad tokens after it: its scores do not move.
    padded = evaluate.token_logprobs(tiny, [CONTEXTS[1], "a much longer neighbour " * 4], [CONTINUATIONS[1], "x"],
                                     batch_size=2)[0]
    np.testing.assert_allclose(padded, alone[1], atol=2e-5)


def test_multiple_choice_picks_the_highest_score_and_normalisation_can_differ(tiny):
    question = {"question": "Pick one:", "options": [" a", " b", " a much longer option", " c"]}
    result = evaluate.multiple_choice(tiny, [question])
    sums = evaluate.continuation_logprob(tiny, [question["question"]] * 4, question["options"])
    assert result["sum"] == [int(np.argmax(sums))]
    np.testing.assert_allclose(result["scores"][0]["logprob"], sums, atol=1e-9)
    assert result["scores"][0]["tokens"] == [2, 2, 21, 2] and result["scores"][0]["chars"] == [2, 2, 21, 2]
    # A short, less likely option against a long one that is likelier per token: the normalisations disagree.
    scores = {"logprob": [-4.0, -9.0], "tokens": [2, 6], "chars": [2, 12]}
    assert evaluate.pick(scores, "sum") == 0
    assert evaluate.pick(scores, "token") == 1 and evaluate.pick(scores, "char") == 1
    with pytest.raises(ValueError, match="normalisation"):
        evaluate.pick(scores, "bytes")
    with pytest.raises(ValueError, match="question 0"):
        evaluate.multiple_choice(tiny, [{"question": "q", "options": [" only"]}])


def test_perplexity_is_exp_of_the_mean_token_loss(tiny):
    texts = ["abc def", "hello"]
    nll, tokens = evaluate.text_nll(tiny, texts)
    assert list(tokens) == [7, 5]
    expected = -sum(reference_logprobs(tiny, "", t).sum() for t in texts) / 12
    assert evaluate.perplexity(tiny, texts) == pytest.approx(math.exp(expected), rel=1e-5)
    with pytest.raises(ValueError, match="item 1: the continuation is empty"):
        evaluate.token_logprobs(tiny, ["a", "b"], ["c", ""])


def test_pass_at_k_matches_brute_force_enumeration():
    for n in range(1, 8):
        for c in range(n + 1):
            samples = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                draws = list(itertools.combinations(samples, k))
                expected = sum(any(d) for d in draws) / len(draws)
                assert evaluate.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert evaluate.pass_at_k(200, 3, 100) == pytest.approx(1 - math.comb(197, 100) / math.comb(200, 100))
    # The naive 1 - (1 - c/n)^k is not the same thing on few samples.
    assert evaluate.pass_at_k(4, 1, 2) == 0.5 and 1 - (1 - 1 / 4) ** 2 == 0.4375
    with pytest.raises(ValueError, match="k <= n"):
        evaluate.pass_at_k(3, 1, 5)


def test_wilson_interval_known_values():
    # Values from Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I.
    low, high = evaluate.wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    low, high = evaluate.wilson_interval(0, 20)
    assert low == 0.0 and round(high, 4) == 0.1611
    low, high = evaluate.wilson_interval(1, 29)
    assert (round(low, 4), round(high, 4)) == (0.0061, 0.1718)
    assert evaluate.wilson_interval(50, 100, confidence=0.99)[1] > evaluate.wilson_interval(50, 100)[1]
    with pytest.raises(ValueError, match="successes"):
        evaluate.wilson_interval(5, 3)


def test_bootstrap_intervals():
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 1.0, 400)
    low, high = evaluate.bootstrap_interval(values)
    assert low < values.mean() < high and 0.15 < high - low < 0.25          # about 2 * 1.96 / sqrt(400)
    # Weighted: the mean per token of texts with different lengths is total / total.
    low, high = evaluate.bootstrap_interval([1.0, 3.0], weights=[3, 1], resamples=500)
    assert 1.0 <= low <= 1.5 <= high <= 3.0
    # Paired: a constant improvement on every item has no uncertainty at all.
    assert evaluate.paired_bootstrap_interval(values, values + 0.3) == pytest.approx((0.3, 0.3))
    with pytest.raises(ValueError, match="same items"):
        evaluate.paired_bootstrap_interval([1.0, 2.0], [1.0])


def test_exact_match_rate_and_parses():
    assert evaluate.exact_match_rate(["x = 1\n", "y=2"], ["x = 1", "y = 2"]) == (0.5, [True, False])
    with pytest.raises(ValueError, match="2 predictions and 1 references"):
        evaluate.exact_match_rate(["a", "b"], ["a"])
    assert evaluate.parses("def f(x):\n    ", "return x + 1", "\n")
    assert not evaluate.parses("def f(x):\n    ", "return x +", "\n")
    assert not evaluate.parses("", "x = '\0'", "")


@pytest.mark.once   # backend-independent subprocesses/imports: the JAX pass is enough
def test_run_tests_reports_pass_failure_error_and_timeout():
    assert evaluate.run_tests("def f(x):\n    return x + 1", "assert f(1) == 2").status == "passed"
    failed = evaluate.run_tests("def f(x):\n    return x", "assert f(1) == 2")
    assert failed.status == "failed" and "AssertionError" in failed.detail
    assert evaluate.run_tests("def f(x:\n    pass", "").status == "error"
    assert evaluate.run_tests("raise SystemExit(0)", "").status == "error"          # exit() is not a pass
    skipped = evaluate.run_tests("import os\nos._exit(0)", "assert False")          # leaving before the asserts
    assert skipped.status == "error" and "before the tests finished" in skipped.detail
    assert evaluate.run_tests("import os\nassert os.listdir('.') == ['candidate.py']", "").passed  # a fresh folder
    start = time.perf_counter()
    slow = evaluate.run_tests("import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', "
                              "'import time; time.sleep(60)'])\nwhile True:\n    pass", "", timeout=1.0)
    assert slow.status == "timeout" and time.perf_counter() - start < 15   # its child did not keep it waiting


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "data" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.once   # backend-independent subprocesses/imports: the JAX pass is enough
def test_every_code_task_reference_passes_its_tests():
    tasks = data.load("code_tasks", "test")
    assert 40 <= len(tasks) <= 60
    for task in tasks:
        assert evaluate.parses(task["prefix"], task["middle"], task["suffix"]), task["id"]
        result = evaluate.run_tests(task["prefix"] + task["middle"] + task["suffix"], task["tests"])
        assert result.passed, (task["id"], result)


@pytest.mark.once   # backend-independent subprocesses/imports: the JAX pass is enough
def test_every_multiple_choice_question_has_exactly_one_answer():
    maker = load_script("make_stdlib_mc")
    questions = data.load("stdlib_mc", "test")
    assert 150 <= len(questions) <= 300
    lengths_differ = 0
    for q in questions:
        assert len(set(q["options"])) == len(q["options"]) == 4, q["id"]
        assert q["options"][q["answer"]] == q["function"], q["id"]
        module = importlib.import_module(q["module"])
        description = q["question"].split("Description: ", 1)[1].split("\nFunction:")[0]
        right = [o for o in q["options"] if maker.first_sentence(getattr(module, o)) == description]
        assert right == [q["function"]], (q["id"], right)
        lengths_differ += len({len(o) for o in q["options"]}) == 4
    assert lengths_differ == len(questions)


@pytest.mark.once
def test_real_270m_scores_match_its_logits_and_tuning_exact_match_uses_the_rate(gemma_270m):
    tok = gemma_270m.tokenizer
    context, continuation = "The capital of France is", " Paris"
    got = evaluate.token_logprobs(gemma_270m, [context], [continuation])[0]
    ids = [tok.bos_id] + tok.encode(context) + tok.encode(continuation)
    logits = gemma_270m.logits(ids)[0].astype(np.float64)                           # (seq, vocab)
    logsoftmax = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    n = len(tok.encode(continuation))
    np.testing.assert_allclose(got, logsoftmax[np.arange(len(ids) - n - 1, len(ids) - 1), ids[-n:]], atol=1e-3)
    q = {"question": "The capital of France is", "options": [" Paris", " a small village in Peru"]}
    assert evaluate.multiple_choice(gemma_270m, [q])["sum"] == [0]
    examples = [{"prompt": "Say the word yes.", "response": "Yes"}, {"prompt": "Say no.", "response": "No"}]
    rate, answers = gemma_kit.tuning.exact_match(gemma_270m, examples, max_new_tokens=3, progress=False)
    assert rate == evaluate.exact_match_rate(answers, ["Yes", "No"])[0]
