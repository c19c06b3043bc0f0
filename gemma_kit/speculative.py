"""Speculative decoding: guess a few tokens cheaply, check them all in one pass, keep the exact output.

A decode step reads every weight of the model to produce one token. Speculative
decoding (Leviathan et al., 2023; Chen et al., 2023) lets a cheap *drafter*
(``drafting.py``: prompt lookup, or a smaller model) propose ``k`` tokens, then
runs the target model once over a chunk of ``k + 1`` tokens (the verify pass):

    chunk   = [last, d1, ..., dk]               at time steps t ... t + k
    logits  = extend(chunk, all_logits=True)    # (k + 1, vocab): what follows each chunk token
    greedy:   accept d1..dj while d_i == argmax(logits[i - 1]); then add argmax(logits[j])
    sampling: accept d_i with probability min(1, p(d_i) / q(d_i)); at the first rejection draw
              from normalize(max(0, p - q)); if all k are accepted, draw a bonus token from p

Each pass gives between 1 and ``k + 1`` tokens, and the output is the target's own:
token-for-token plain greedy decoding (``generate.py``) when greedy, and exactly the
target's distribution when sampling (p and q are the filtered, temperature-scaled
distributions ``sampling.py`` draws from, see ``probabilities``).

*Rolling back the cache.* The verify pass wrote ``k + 1`` steps; only ``j + 1`` are
kept, and the next chunk starts at ``t + j + 1``. Attention caches roll back by time:
the rejected steps' slots are masked by their times and overwritten later; a sliding
ring keeps ``chunk - 1`` extra slots for that (``backbone.init_cache(..., chunk=)``).
A recurrent state (Griffin, RecurrentGemma) has no time to roll back to: ``RollbackCache``
keeps the state from before the chunk (its steps then do not donate their cache) and,
when fewer than all ``k`` drafts were accepted, runs the kept tokens again from it:
those models pay a second, shorter pass (and compile one per length up to ``k``).

*A drafter that reads the target.* A Gemma 4 assistant (``drafting.Assistant``) has no cache:
it drafts from the target's hidden state at the newest kept token and attends to the target's
own rings, so the target keeps each pass's hidden states (``extend(..., return_hidden=True)``).

Shapes stay fixed: a verify chunk always has ``max_draft + 1`` tokens (a short draft
is padded with its last token, and acceptance stops at its real length), so each
model compiles one verify shape beside the one-token decode. Batch 1 only.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from keras import ops

from .compile import compile_model_function
from .generate import bucket
from .sampling import check_sampler


@dataclass
class SpeculationStats:
    """What one speculative ``generate`` did (``model.last_speculation``).

    ``verify_calls`` counts the target's passes after the prompt (a pass with an empty
    draft is a plain decode step); ``new_tokens`` the tokens produced, a stop token included.
    """
    drafted: int = 0
    accepted: int = 0
    verify_calls: int = 0
    new_tokens: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_call(self) -> float:
        """New tokens per target pass, the prompt's pass included (plain decoding: 1.0)."""
        return self.new_tokens / (self.verify_calls + 1)


# -- the distributions p and q ------------------------------------------------------------------------
def probabilities(logits, sampler="greedy", temperature=1.0, top_k=None, top_p=None) -> np.ndarray:
    """float64 (n, vocab): the distribution ``sampling.sample`` draws from for each row of ``logits``.

    The same filtering, in NumPy: greedy is a point mass on the argmax; otherwise
    ``softmax(logits / temperature)`` restricted to the top-k or top-p candidates.
    """
    logits = np.asarray(logits, np.float32)
    if sampler == "greedy":
        return np.stack([_one_hot(i, logits.shape[-1]) for i in np.argmax(logits, axis=-1)])
    logits = logits / np.float32(temperature)
    if sampler == "top_k":
        kth_largest = np.partition(logits, -int(top_k), axis=-1)[:, -int(top_k)][:, None]   # (n, 1)
        logits = np.where(logits >= kth_largest, logits, -np.inf)
    elif sampler == "top_p":
        probs = _softmax(logits).astype(np.float32)
        descending = np.sort(probs, axis=-1)[:, ::-1]                             # (n, vocab)
        mass_before = np.cumsum(descending, axis=-1) - descending                 # probability of likelier tokens
        cutoff = np.where(mass_before < np.float32(top_p), descending, 2.0).min(axis=-1, keepdims=True)
        logits = np.where(probs >= cutoff, logits, -np.inf)
    return _softmax(logits.astype(np.float64))


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _one_hot(index, size):
    row = np.zeros(size)
    row[index] = 1.0
    return row


def _draw(p, rng) -> int:
    return int(rng.choice(p.shape[-1], p=p / p.sum()))


# -- the accept/reject rules ---------------------------------------------------------------------------
def accept_greedy(target_ids, draft):
    """``(j, next)``: how many drafted tokens match the target's argmax ``target_ids`` (n + 1,), and the
    token the target adds after them (its correction, or a bonus when all ``n`` match)."""
    j = 0
    while j < len(draft) and int(target_ids[j]) == draft[j]:
        j += 1
    return j, int(target_ids[j])


def accept_sampled(p, q, draft, rng):
    """``(j, next)`` by speculative sampling: p (n + 1, vocab) the target's distributions after each chunk
    token, q (n, vocab) the drafter's (None: a point mass on each drafted token, as prompt lookup),
    draft (n,) the drafted ids. The kept tokens ``draft[:j] + [next]`` are distributed exactly as p's."""
    for i, x in enumerate(draft):
        q_row = _one_hot(x, p.shape[-1]) if q is None else q[i]
        if rng.random() < min(1.0, p[i, x] / q_row[x]):
            continue                                                   # accepted: on to the next drafted token
        residual = np.maximum(p[i] - q_row, 0.0)                       # where the target wants more than drafted
        return i, _draw(residual if residual.sum() > 0 else p[i], rng)
    return len(draft), _draw(p[len(draft)], rng)                       # all accepted: a bonus token from p


# -- a model's cache, kept in step with the accepted tokens -----------------------------------------------
_STEPS = weakref.WeakKeyDictionary()          # model.generator -> compiled steps (renewed by model.recompile())


def compiled_steps(model):
    """Compiled prefill / extend (donating the cache) / extend_kept (keeping it) -> (float32 logits, caches),
    plus the hidden states with ``return_hidden=True``."""
    if model.generator not in _STEPS:
        backbone = model.backbone

        def extend(token_ids, time, start, caches, all_logits, return_hidden=False):
            return backbone.extend(token_ids, time, start, caches, all_logits=all_logits, return_hidden=return_hidden)

        def prefill(token_ids, start, caches, return_hidden=False):
            return backbone.extend(token_ids, 0, start, caches, return_hidden=return_hidden)

        static = ("all_logits", "return_hidden")
        _STEPS[model.generator] = SimpleNamespace(
            prefill=compile_model_function(backbone, prefill, ("return_hidden",), donate_argnums=(2,)),
            extend=compile_model_function(backbone, extend, static, donate_argnums=(3,)),
            extend_kept=compile_model_function(backbone, extend, static))
    return _STEPS[model.generator]


class RollbackCache:
    """One model's cache during speculative decoding: ``feed`` chunks of tokens, then ``keep`` a prefix.

    ``fed``: the real tokens in the cache (the prompt first); ``time``: the next time step.
    Outputs are float32 NumPy logits: greedy takes their argmax here, as ``sampling.sample`` does.
    ``keep_hidden``: also keep each pass's hidden states, for ``last_hidden`` (a Gemma 4 assistant).
    """

    def __init__(self, model, prompt, cache_len, chunk, keep_hidden=False):
        self.steps, self.keep_hidden = compiled_steps(model), keep_hidden
        self.by_time = all(block.attends for block in model.backbone.blocks)   # no recurrent state
        prompt_len = bucket(len(prompt))                                        # left-padded, as generate.py
        token_ids = np.zeros((1, prompt_len), np.int32)
        token_ids[0, prompt_len - len(prompt):] = prompt
        self.start = ops.convert_to_tensor(np.array([prompt_len - len(prompt)], np.int32))
        caches = model.backbone.init_cache(1, cache_len, chunk)
        out, self.caches, *hidden = self.steps.prefill(ops.convert_to_tensor(token_ids), self.start, caches,
                                                       return_hidden=keep_hidden)
        self.first = ops.convert_to_numpy(out)[0]               # (vocab,): what follows the prompt
        self.fed, self.time = list(prompt), prompt_len
        self.hidden = self._hidden_rows(hidden)
        self.saved = []                                         # (len(fed), time, caches) before cuttable chunks

    def feed(self, tokens, all_logits=False, may_cut=False):
        """Run ``tokens`` at the next time steps; the chunk's last output, or every position's with
        ``all_logits``. ``may_cut``: ``keep`` may drop some of them (a recurrent model saves its state)."""
        # A recurrent model never donates its cache: a saved state must outlive the call (and its
        # state is small). Its target and draft steps are then the same programs.
        step = self.steps.extend if self.by_time else self.steps.extend_kept
        if may_cut and not self.by_time:
            self.saved.append((len(self.fed), self.time, self.caches))
        out, self.caches, *hidden = step(ops.convert_to_tensor(np.array([tokens], np.int32)),
                                         ops.convert_to_tensor(np.int32(self.time)), self.start, self.caches,
                                         all_logits=all_logits, return_hidden=self.keep_hidden)
        self.fed, self.time = self.fed + list(tokens), self.time + len(tokens)
        self.hidden = self._hidden_rows(hidden)
        return ops.convert_to_numpy(out)[0]

    def _hidden_rows(self, hidden):
        """(first time step, float32 (n, width)): the hidden states a pass returned for its last n steps."""
        if not hidden:
            return None
        rows = ops.convert_to_numpy(ops.cast(hidden[0][0], "float32")).reshape(-1, hidden[0].shape[-1])
        return self.time - len(rows), rows

    def last_hidden(self):
        """(width,): the final-norm hidden state at step ``time - 1`` (the newest kept token), the one the
        next token was predicted from; needs ``keep_hidden``."""
        first, rows = self.hidden
        return rows[self.time - 1 - first]

    def keep(self, length):
        """Keep the first ``length`` fed tokens and forget the rest (the rejected drafts)."""
        cut = len(self.fed) - length
        if cut > 0 and self.by_time:
            self.time -= cut                                    # their slots hold future times: masked, then reused
        elif cut > 0:                                           # recurrent: back to the saved state, then recompute
            fed_len, self.time, self.caches = max((s for s in self.saved if s[0] <= length), key=lambda s: s[0])
            kept, self.fed = self.fed[fed_len:length], self.fed[:fed_len]
            if kept:
                self.feed(kept)
        self.fed, self.saved = self.fed[:length], []


# -- the loop ----------------------------------------------------------------------------------------
def drafter_of(speculative):
    """``"prompt_lookup"``, a ``PromptLookup``, a ``DraftModel`` or a ``GemmaModel``, an ``Assistant`` or a
    ``Gemma4Assistant`` -> a drafter."""
    from .drafting import Assistant, DraftModel, PromptLookup
    from .model import GemmaModel
    from .models.gemma4.assistant import Gemma4Assistant

    if isinstance(speculative, str) and speculative == "prompt_lookup":
        return PromptLookup()
    if isinstance(speculative, GemmaModel):
        return DraftModel(speculative)
    if isinstance(speculative, Gemma4Assistant):
        return Assistant(speculative)
    if isinstance(speculative, (PromptLookup, DraftModel, Assistant)):
        return speculative
    raise ValueError(f"speculative= takes 'prompt_lookup', a PromptLookup(...), a DraftModel(...) or a draft "
                     f"GemmaModel, or a Gemma 4 Assistant(...), got {speculative!r}")


def speculative_tokens(model, prompts_ids, max_new_tokens, speculative, stop_ids=(), sampler="greedy",
                       temperature=1.0, top_k=None, top_p=None, seed=None, use_cache=True):
    """The new ids for one prompt (a stop token included, if one came), as ``Generator.tokens`` would
    give them; sets ``model.last_speculation`` (``SpeculationStats``)."""
    if len(prompts_ids) != 1:
        raise ValueError(f"Speculative decoding runs one prompt at a time (batch 1); got {len(prompts_ids)} "
                         "prompts: call generate once per prompt, or drop speculative=")
    if not use_cache:
        raise ValueError("Speculative decoding needs the cache: drop use_cache=False or speculative=")
    drafter = drafter_of(speculative)
    top_k, top_p = check_sampler(sampler, temperature, top_k, top_p)
    greedy, prompt, k = sampler == "greedy", list(prompts_ids[0]), drafter.max_draft
    to_probs = None if greedy else (lambda logits: probabilities(logits, sampler, temperature, top_k, top_p))
    rng = np.random.default_rng(seed)
    cache_len = -(-(bucket(len(prompt)) + max_new_tokens + k + 1) // 128) * 128   # room for a last verify chunk
    drafter.start(model, prompt, cache_len, k + 1)                     # checks the draft model first
    # A drafter that reads the target (drafting.Assistant) needs its hidden states, and sliding rings one
    # slot longer: its window reaches one step further back than the target's own, never to a rolled-back step.
    reads_target = getattr(drafter, "reads_target", False)
    target = RollbackCache(model, prompt, cache_len, k + 2 if reads_target else k + 1, keep_hidden=reads_target)
    if reads_target:
        drafter.attach(target)
    first = int(np.argmax(target.first)) if greedy else _draw(to_probs(target.first[None])[0], rng)
    stats, new, stop = SpeculationStats(), [first], set(int(s) for s in stop_ids)
    while len(new) < max_new_tokens and new[-1] not in stop:
        ids = prompt + new
        draft, q = drafter.propose(ids, min(k, max_new_tokens - len(new) - 1), rng, to_probs)
        if not draft:                                           # nothing to verify: a plain decode step
            out = target.feed([ids[-1]])
            j, token = 0, int(np.argmax(out)) if greedy else _draw(to_probs(out[None])[0], rng)
        else:                                                   # the verify pass: k + 1 tokens, padded
            out = target.feed([ids[-1]] + draft + draft[-1:] * (k - len(draft)), all_logits=True, may_cut=True)
            out = out[:len(draft) + 1]                          # positions past the real draft are never compared
            j, token = (accept_greedy(np.argmax(out, axis=-1), draft) if greedy
                        else accept_sampled(to_probs(out), q, draft, rng))
        stats.drafted += len(draft)
        stats.accepted += j
        stats.verify_calls += 1
        for t in draft[:j] + [token]:                           # stop at a stop token, as plain decoding does
            if new[-1] in stop:
                break
            new.append(t)
        target.keep(len(prompt) + len(new) - 1)                 # the newest token is fed with the next chunk
    stats.new_tokens = len(new)
    model.last_speculation = stats
    return new
