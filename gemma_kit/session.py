"""A chat that keeps its cache between turns: ``model.chat()`` returns a ``ChatSession``.

    session = model.chat(system="You are terse.")
    session.send("2+2?")                          # -> "4"
    session.send("And 3+3?")                      # feeds only the new turn's tokens
    for piece in session.stream("Why?"): print(piece, end="")
    session.last_turn                             # tokens fed, tokens written, seconds

A chat model reads one text: the chat template's (``chat.py``) for the whole conversation.
Answering turn n with ``generate`` means running that whole text again, turns 1 ... n-1
included, so each turn costs more than the last. The session keeps the cache instead
(``nn/kv_cache.py``: a chunk of any length is appended at any time) and feeds only what
is new, the tail of the template's text that the cache does not hold yet::

    cache:  <bos><start_of_turn>user\\n2+2?<end_of_turn>\\n<start_of_turn>model\\n4
    fed:    <end_of_turn>\\n<start_of_turn>user\\nAnd 3+3?<end_of_turn>\\n<start_of_turn>model\\n

(the end-of-turn token the model wrote was sampled but not fed yet). When a turn starts,
the cache holds ``encode(apply_chat_template(history + [message]), add_bos=True)``: exactly
the text ``generate`` would be given, so the answers are the same.

When the template writes the past differently from what the cache holds, the cache is
rolled back before feeding. Gemma 4's template drops a model turn's thoughts once a user
turn follows (and its 26B/31B template the empty thought channel that ends the generation
prompt); the Gemma templates strip an answer's surrounding spaces; and the text of an
answer may encode to other ids than those the model sampled. The session keeps a copy of
the cache as it stood before the last answer (one more cache in memory) and, when the ids
differ from that point on, restarts from the copy: the answer is fed again as the template
writes it. A difference earlier than that (an edited ``history``) re-runs the whole
conversation from time 0.

New tokens are fed in pieces whose lengths are powers of two (38 = 32 + 4 + 1, then the
last token), each appended with ``extend`` at its own time: the compiled steps see a few
shapes only, and nothing is padded (a pad would be written into the sliding rings). The
last token goes through the decoding step, which samples the first new token.

The cache grows with the conversation. Every decoding step reads all of a global layer's
slots, written or not (``nn/kv_cache.py``), so a cache allocated for ``max_length`` = 4096
steps up front decoded at 86 ms a token on the 270M here, against 58 ms with 256 slots. A
turn therefore asks for a power of two of slots, at least 256, that holds the conversation
and ``max_new_tokens`` (``max_length`` at most), and a cache that is too small is copied into
a bigger one (``grow``). Growing keeps every step where it was: until a ring has wrapped,
step ``t`` sits in slot ``t``, and a ring smaller than its window has never wrapped. Each new
size compiles the steps once more; sizes double, so a long chat sees a handful of them.
"""

from __future__ import annotations

import dataclasses
import time as clock

import keras
import numpy as np
from keras import ops

from .generate import LiveCache, bucket, sampling


@dataclasses.dataclass(frozen=True)
class TurnRecord:
    """What one turn cost (``session.last_turn``)."""
    prompt_tokens: int        # tokens fed to the cache this turn: the new turn's text (and any re-fed)
    cached_tokens: int        # tokens of the conversation already in the cache, reused as they were
    new_tokens: int           # tokens the model wrote (the stop token excluded)
    prefill_seconds: float    # feeding the prompt tokens, until the first new token is known
    decode_seconds: float     # the rest of the turn (wall time, a stream's reader included)


def grow(caches, bigger):
    """``caches`` copied into the front of ``bigger``, a fresh cache of more slots (same structure).

    Each ring keeps its steps in the same slots; a part of the same shape in both (a sliding
    ring already as long as its window, Griffin's recurrent state) is kept as it is."""
    def into(old, new):
        if tuple(old.shape) == tuple(new.shape):
            return old
        return ops.slice_update(new, [0] * len(old.shape), old)      # (batch, slots, heads, dim): old slots first
    return keras.tree.map_structure(into, caches, bigger)


def power_of_two_pieces(length: int) -> list[int]:
    """Piece lengths for a chunk of ``length`` tokens, largest first: 37 -> [32, 4, 1]."""
    return [1 << bit for bit in reversed(range(length.bit_length())) if length >> bit & 1]


class ChatSession:
    """A conversation with ``model`` whose cache lives between turns; see the module docstring."""

    def __init__(self, model, system: str | None = None, max_length: int | None = None,
                 enable_thinking: bool = False):
        limit = model.config.max_sequence_length
        if model.tokenizer is None:
            raise ValueError("model.chat() needs a tokenizer: this model was built without one")
        if system is not None and not isinstance(system, str):
            raise TypeError(f"system must be a str or None, got {type(system).__name__}")
        if max_length is None:
            max_length = min(limit, 4096)
        if not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool) or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2 (tokens the cache holds), got {max_length!r}")
        if max_length > limit:
            raise ValueError(f"max_length={max_length} exceeds the model's maximum sequence length of {limit} tokens")
        self.model, self.system, self.max_length = model, system or None, int(max_length)
        self.enable_thinking = bool(enable_thinking)
        self._open = None
        self.reset()
        self._template(self.history + [{"role": "user", "content": "?"}])   # Gemma 1-3 refuse enable_thinking here

    def reset(self):
        """Forget the conversation (the system message stays) and drop the cache."""
        if self._open is not None:
            self._open.close()
        self.history = [{"role": "system", "content": self.system}] if self.system else []
        self._ids, self._caches = [], None      # time step t of the cache holds self._ids[t]
        self._capacity = 0                      # the slots self._caches was made for (0: no cache)
        self._wanted = 0                        # the slots this turn needs (set when a turn starts)
        self._snapshot = None                   # (time, copy of the cache, its slots) before the last answer
        self.last_turn = None

    @property
    def tokens_in_cache(self) -> int:
        return len(self._ids)

    @property
    def cache_slots(self) -> int:
        """The time steps the cache has room for now (it grows by powers of two up to ``max_length``)."""
        return self._capacity

    @property
    def cached_ids(self) -> list[int]:
        """The token ids the cache holds, in time order (the template's text, then the answer so far)."""
        return list(self._ids)

    def __repr__(self):
        turns = sum(m["role"] == "user" for m in self.history)
        return (f"ChatSession({turns} turns, {self.tokens_in_cache} tokens in a cache of {self.cache_slots} slots, "
                f"max_length={self.max_length})")

    # -- public API --------------------------------------------------------------------------------
    def send(self, message: str, max_new_tokens: int = 256, sampler: str = "greedy", temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None, thoughts: str = "keep"):
        """The model's answer to ``message``; ``thoughts`` as in ``GemmaModel.generate``:
        "keep" the text as written, "hide" Gemma 4's thoughts, or "return" ``(thoughts, answer)``."""
        from .chat import split_thoughts

        if thoughts not in ("keep", "hide", "return"):
            raise ValueError(f"thoughts must be 'keep', 'hide' or 'return', got {thoughts!r}")
        ids = list(self._start(message, max_new_tokens, sampler, temperature, top_k, top_p, seed))
        text = self.model.tokenizer.decode(ids)
        if thoughts == "keep":
            return text
        return split_thoughts(text) if thoughts == "return" else split_thoughts(text)[1]

    def stream(self, message: str, max_new_tokens: int = 256, sampler: str = "greedy", temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, seed: int | None = None):
        """Yield the answer's text piece by piece. Stopping early ends the turn where it stood."""
        from .tokenizer import StreamingDecoder

        turn = self._start(message, max_new_tokens, sampler, temperature, top_k, top_p, seed)

        def pieces():
            try:
                yield from StreamingDecoder(self.model.tokenizer).pieces(turn)
            finally:
                turn.close()
        return pieces()

    # -- one turn ----------------------------------------------------------------------------------
    def _template(self, messages) -> list[int]:
        text = self.model.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                        enable_thinking=self.enable_thinking)
        return self.model.tokenizer.encode(text, add_bos=True)

    def _start(self, message, max_new_tokens, sampler, temperature, top_k, top_p, seed):
        """Check the arguments, close an unfinished stream, and return the turn's id generator."""
        if not isinstance(message, str):
            raise TypeError(f"message must be a str, got {type(message).__name__}")
        if not message.strip():
            raise ValueError("message is empty: give at least one character of text")
        if not isinstance(max_new_tokens, (int, np.integer)) or isinstance(max_new_tokens, bool) or max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        draws = sampling(sampler, temperature, top_k, top_p, seed, 1, self.model.config.vocab_size)
        if self._open is not None:                   # a stream left unfinished ends here, as it stood
            self._open.close()
        messages = self.history + [{"role": "user", "content": message}]
        target = self._template(messages)            # the whole conversation's ids, <bos> first
        if len(target) + max_new_tokens > self.max_length:
            raise ValueError(
                f"This turn does not fit the session's cache: the conversation holds {len(target)} tokens with "
                f"the new message, plus max_new_tokens={max_new_tokens}, over max_length={self.max_length}. "
                f"Start a new session (model.chat() or session.reset()) or pass a larger max_length to "
                f"model.chat() (this model allows up to {self.model.config.max_sequence_length}).")
        self._open = self._turn(messages, target, max_new_tokens, draws)
        return self._open

    def _turn(self, messages, target, max_new_tokens, draws):
        """Feed what the cache lacks of ``target``, then sample; yields the new token ids."""
        began = clock.perf_counter()
        cached = self._rewind(target)                  # the cache now holds target[:cached]
        self._wanted = min(bucket(len(target) + max_new_tokens, minimum=256), self.max_length)
        stable = self._stable_length(messages, target)
        self._snapshot = None
        if cached < stable < len(target):              # the generation prompt ends in text a later turn drops
            self._append(target[cached:stable])
            self._snapshot = (stable, keras.tree.map_structure(ops.copy, self._caches), self._capacity)
        self._append(target[len(self._ids):-1])
        live = self._sample_after(target[-1], draws)
        if stable == len(target):
            self._snapshot = (len(target), keras.tree.map_structure(ops.copy, live.caches), self._wanted)
        stop = self.model.stop_ids()
        written, first, intact = [], None, True
        try:
            for step in self.model.generator.sample_loop(live, max_new_tokens, draws, stop):
                first = first or clock.perf_counter()
                written.append(int(step[0]))
                if written[-1] in stop:
                    break
                yield written[-1]
        except GeneratorExit:
            raise
        except BaseException:
            intact = False                           # stopped inside a step: the (donated) cache is lost
            raise
        finally:
            done = clock.perf_counter()
            self._open = None
            self._ids, self._caches = (target + written[:live.time - len(target)], live.caches) if intact else ([], None)
            self._capacity = self._wanted if intact else 0
            answer = [t for t in written if t not in stop]
            self.history = messages + [{"role": "model", "content": self.model.tokenizer.decode(answer)}]
            first = first or done
            self.last_turn = TurnRecord(len(target) - cached, cached, len(answer), first - began, done - first)

    def _stable_length(self, messages, target) -> int:
        """How much of ``target`` the template writes again once an answer and a new message follow:
        all of it for Gemma 1-3; Gemma 4's 26B/31B template drops the empty thought channel that
        ends its generation prompt. The cache is copied at that point, before the answer."""
        later = self._template(messages + [{"role": "model", "content": "x"}, {"role": "user", "content": "x"}])
        return _common_prefix(target, later)

    def _rewind(self, target) -> int:
        """How many of ``target``'s ids the cache keeps; rolls the cache back when it holds others."""
        common = min(_common_prefix(self._ids, target), len(target) - 1)   # at least one id is fed: it is sampled
        if common == len(self._ids):
            return common
        if self._snapshot is not None and self._snapshot[0] <= common:
            time, self._caches, self._capacity = self._snapshot       # the copy made before the last answer
            self._ids, self._snapshot = self._ids[:time], None
            return time
        self._ids, self._caches, self._snapshot, self._capacity = [], None, None, 0
        return 0

    def _take_cache(self):
        """The cache (``self._wanted`` slots) and its ids, which the caller now owns (compiled steps
        donate the cache's buffers)."""
        caches, ids, capacity = self._caches, self._ids, self._capacity
        self._caches, self._ids, self._capacity = None, [], 0   # if a step fails, the next turn starts afresh
        if caches is None:
            caches = self.model.backbone.init_cache(1, self._wanted)
        elif capacity < self._wanted:
            caches = grow(caches, self.model.backbone.init_cache(1, self._wanted))
        else:
            self._wanted = capacity                  # a cache never shrinks: its steps are kept in place
        return caches, ids

    def _append(self, ids):
        """Feed ``ids`` after the cache's last step, in power-of-two pieces, without sampling."""
        caches, held = self._take_cache()
        time = len(held)
        for size in power_of_two_pieces(len(ids)):
            chunk = np.asarray(ids[time - len(held):time - len(held) + size], np.int32)[None]   # (1, size)
            caches = self.model.generator.append(ops.convert_to_tensor(chunk), _time(time), _no_padding(), caches)
            time += size
        self._caches, self._ids, self._capacity = caches, held + list(ids), self._wanted

    def _sample_after(self, last_id, draws) -> LiveCache:
        """Feed the prompt's last token through the decoding step, which samples the first new one."""
        caches, held = self._take_cache()
        token = ops.convert_to_tensor(np.asarray([[last_id]], np.int32))                     # (1, 1)
        next_ids, caches = self.model.generator.decode(token, _time(len(held)), _no_padding(), caches, draws.draw(),
                                                       **draws.args)
        return LiveCache(caches, len(held) + 1, _no_padding(), next_ids)


def _common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _no_padding():
    return ops.zeros((1,), "int32")                    # one sequence, no left padding: it starts at 0


def _time(step: int):
    return ops.convert_to_tensor(np.int32(step))      # a tensor: one compiled program for every time
