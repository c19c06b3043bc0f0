"""Drafters for speculative decoding (``speculative.py``): cheap guesses of the next few tokens.

Every drafter has ``max_draft`` and two methods the decoding loop calls:

    start(target, prompt, cache_len, chunk)           # once, before the target's prompt pass
    propose(ids, count, rng, to_probs) -> (draft, q)  # up to `count` ids following `ids`

``q`` (len(draft), vocab) is the distribution each drafted token was drawn from, which
speculative sampling needs; None means a point mass on the drafted token.

- ``PromptLookup``: prompt-lookup decoding (Saxena, 2023; transformers'
  ``prompt_lookup_num_tokens``, llama.cpp's lookup decoding). Find the last earlier
  occurrence of the sequence's final n-gram and propose the tokens that followed it.
  No model at all: it pays off when the output copies its input (code edits, quotes,
  summaries with names), which is common.
- ``DraftModel``: a smaller model with the same tokenizer (e.g. Gemma 3 270M for
  Gemma 3 1B) decodes ``count`` tokens greedily, or samples them from its own
  distribution when the target samples. Its cache follows the accepted tokens
  with the same rollback rules as the target's (``speculative.RollbackCache``).
- ``Assistant``: a Gemma 4 multi-token-prediction assistant (``models/gemma4/assistant.py``),
  transformers' ``SinglePositionMultiTokenCandidateGenerator``. No cache of its own: each
  round starts from the target's hidden state at the newest kept token and attends to the
  target's rings. It defines ``reads_target`` and ``attach(target_cache)``, which the loop
  calls with the target's ``RollbackCache`` once the prompt has run.
"""

from __future__ import annotations

import weakref

import numpy as np
from keras import ops
from numpy.lib.stride_tricks import sliding_window_view

from .compile import compile_model_function
from .speculative import RollbackCache


def check_max_draft(max_draft):
    if not (isinstance(max_draft, (int, np.integer)) and max_draft >= 1):
        raise ValueError(f"max_draft must be an integer >= 1 (tokens drafted per verify pass), got {max_draft!r}")
    return int(max_draft)


class PromptLookup:
    """Draft by copying: the tokens that followed the last earlier occurrence of the final n-gram."""

    def __init__(self, ngram: int = 3, max_draft: int = 4):
        if not (isinstance(ngram, (int, np.integer)) and ngram >= 1):
            raise ValueError(f"ngram must be an integer >= 1, got {ngram!r}")
        self.ngram, self.max_draft = int(ngram), check_max_draft(max_draft)

    def __repr__(self):
        return f"PromptLookup(ngram={self.ngram}, max_draft={self.max_draft})"

    def start(self, target, prompt, cache_len, chunk):
        """Nothing to prepare: the ids themselves are the drafter."""

    def lookup(self, ids, count):
        """Up to ``count`` ids: try n = ngram down to 1, and copy what followed the latest match, preferring
        the latest that leaves ``count`` ids to copy (in a run like "a a a" the latest match leaves one)."""
        ids = np.asarray(ids)
        for n in range(min(self.ngram, len(ids) - 1), 0, -1):
            windows = sliding_window_view(ids[:-1], n)                   # (len - n, n): every earlier n-gram
            matches = np.flatnonzero((windows == ids[-n:]).all(axis=1))   # where the final n-gram occurred
            if len(matches):
                full = matches[matches + n + count <= len(ids)]
                follow = (full if len(full) else matches)[-1] + n        # the token after the chosen match
                return [int(t) for t in ids[follow:follow + count]]
        return []

    def propose(self, ids, count, rng, to_probs):
        return self.lookup(ids, count), None                             # q: a point mass on each id


class DraftModel:
    """Draft with a smaller ``GemmaModel`` of the same vocabulary."""

    def __init__(self, model, max_draft: int = 4):
        self.model, self.max_draft = model, check_max_draft(max_draft)
        self.live = None

    def __repr__(self):
        return f"DraftModel({self.model.config.name!r}, max_draft={self.max_draft})"

    def start(self, target, prompt, cache_len, chunk):
        ours, theirs = self.model.config.vocab_size, target.config.vocab_size
        if ours != theirs:
            raise ValueError(f"The draft model {self.model.config.name!r} has a vocabulary of {ours} tokens but the "
                             f"target {target.config.name!r} has {theirs}: a draft model must share the tokenizer")
        self.live = RollbackCache(self.model, prompt, cache_len, chunk)

    def propose(self, ids, count, rng, to_probs):
        live = self.live
        if count == 0:
            return [], None
        common = 0                                   # the draft's cache holds ids[:common]; the rest is new
        while common < min(len(live.fed), len(ids) - 1) and live.fed[common] == ids[common]:
            common += 1
        live.keep(common)                            # rejected drafts out
        for token in ids[common:]:                   # the accepted ids it has not seen: 1, or 2 after a bonus
            out = live.feed([token], may_cut=True)   # one at a time: a draft model compiles one step shape
        draft, q = [], []
        for i in range(count):
            if to_probs is None:
                draft.append(int(np.argmax(out)))    # greedy: the draft model's argmax
            else:
                q.append(to_probs(out[None])[0])     # (vocab,): its filtered distribution
                draft.append(int(rng.choice(len(q[-1]), p=q[-1])))
            if i < count - 1:
                out = live.feed(draft[-1:], may_cut=True)
        return draft, (np.stack(q) if q else None)


_EMBED = weakref.WeakKeyDictionary()        # target model.generator -> compiled scaled token embedding
_STEP = weakref.WeakKeyDictionary()         # Gemma4Assistant -> its compiled ``over_target_cache``


class Assistant:
    """Draft with a Gemma 4 assistant (``gemma_kit.load_assistant``) for its Gemma 4 target."""

    reads_target = True

    def __init__(self, assistant, max_draft: int = 4):
        from .models.gemma4.assistant import Gemma4Assistant

        if not isinstance(assistant, Gemma4Assistant):
            raise TypeError(f"Assistant(...) takes a Gemma4Assistant (gemma_kit.load_assistant(path)), got "
                            f"{type(assistant).__name__}")
        self.model, self.max_draft = assistant, check_max_draft(max_draft)
        self.live = self.sources = None

    def __repr__(self):
        return f"Assistant({self.model.config.name!r}, max_draft={self.max_draft})"

    def start(self, target, prompt, cache_len, chunk):
        self.sources = self.model.sources_in(target.config)        # {layer type: target block}, checked
        self.cache_len = cache_len
        if target.generator not in _EMBED:
            backbone = target.backbone

            def embed(token_ids):                                  # the target's input embedding, scaled
                x = backbone.token_embedding(token_ids)             # (1, 1, target width)
                return x * ops.cast(backbone.embedding_scale, x.dtype)
            _EMBED[target.generator] = compile_model_function(backbone, embed)
        if self.model not in _STEP:
            _STEP[self.model] = compile_model_function(self.model, self.model.over_target_cache)
        self.embed, self.step = _EMBED[target.generator], _STEP[self.model]

    def attach(self, live):
        """The target's ``RollbackCache`` (kept hidden states, rings one slot longer), after its prompt pass."""
        from .models.gemma.config import LOCAL

        needed = min(self.model.config.sliding_window + self.max_draft + 1, self.cache_len)
        for layer_type, i in self.sources.items():        # sliding_window + 1 keys back, past max_draft rolled back
            if layer_type == LOCAL and live.caches[i][0].shape[1] < needed:
                raise ValueError(f"The target's sliding ring has {live.caches[i][0].shape[1]} slots; the assistant "
                                 f"needs {needed}: make it with RollbackCache(..., chunk=max_draft + 2)")
        self.live = live

    def propose(self, ids, count, rng, to_probs):
        live = self.live
        if count == 0:
            return [], None
        if live.fed != list(ids[:-1]):
            raise RuntimeError("Assistant.propose: the target's cache does not hold the ids before the newest one")
        rings = {layer_type: live.caches[i] for layer_type, i in self.sources.items()}   # (keys, values) rings
        time = ops.convert_to_tensor(np.int32(live.time))          # the newest token's step: all drafts' position
        hidden = live.last_hidden()[None, None]                    # (1, 1, width): the target's, at time - 1
        token, draft, q = ids[-1], [], []
        for _ in range(count):
            token_embedding = self.embed(ops.convert_to_tensor(np.array([[token]], np.int32)))
            logits, hidden = self.step(token_embedding, hidden, time, live.start, rings)
            out = ops.convert_to_numpy(logits)[0, 0]               # (vocab,) float32
            if to_probs is None:
                token = int(np.argmax(out))                        # greedy, as transformers' generator
            else:
                q.append(to_probs(out[None])[0])                   # (vocab,): the assistant's filtered distribution
                token = int(rng.choice(len(q[-1]), p=q[-1]))
            draft.append(token)
        return draft, (np.stack(q) if q else None)
