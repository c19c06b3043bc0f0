"""Autoregressive generation with a KV cache: one loop for every model.

    prefill: run the whole prompt once, filling the cache      -> logits of the last token
    decode:  feed the chosen token, read the cache, append     -> logits of the next token
             ... repeat until a stop token or max_new_tokens

Without a cache, step ``t`` would recompute the keys and values of all ``t``
previous tokens: quadratic work. With it, each step processes one token.

A batch of prompts of different lengths is *left-padded* to one length, so
that every sequence writes its next token at the same time step (one cache
index for the whole batch); ``start[b]`` marks where sequence ``b`` begins.
Prompt lengths are rounded up to a few bucket sizes and the cache to a
multiple of 128, so the compiled functions are reused across calls.

The compiled functions take and return the cache, so they work for every
backbone (``nn/backbone.py``: ``init_cache``, ``extend``):

- ``Generator.prefill``: a prompt at time 0, then the sampler -> (next ids (batch,), cache);
- ``Generator.decode``: one token (or a chunk: chunked prefill's last) at a time step known only
  when it runs, then the sampler -> (next ids, cache);
- ``Generator.append``: a chunk at a given time, no sampler -> cache (the output layer is never
  computed: the compiler drops what nothing reads).

``Generator.sample_loop`` is the sampling loop itself. It starts from a ``LiveCache`` (the cache,
its time, the first sampled ids), so ``tokens`` (a fresh prompt) and a chat session
(``session.py``: a cache kept between turns) share it. A lesson or a benchmark may call the
compiled functions directly to place a cache at a chosen position.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from keras import ops

from .compile import compile_model_function
from .sampling import check_sampler, gumbel_noise, sample


def bucket(length: int, minimum: int = 16) -> int:
    """Round a prompt length up to a power of two (fewer distinct compiled shapes)."""
    size = minimum
    while size < length:
        size *= 2
    return size


def _scalar(value, dtype):
    return ops.convert_to_tensor(np.asarray(value, dtype=dtype))


@dataclasses.dataclass
class LiveCache:
    """Where a generation stands: the cache holds time steps ``0 ... time - 1``; ``next_ids``
    (batch,) were sampled from the last of them and are not in the cache yet."""
    caches: list
    time: int
    start: object          # (batch,) int tensor: where each left-padded row's real tokens begin
    next_ids: object       # (batch,) int tensor


@dataclasses.dataclass
class Sampling:
    """The sampler's arguments for the compiled steps, and a ``draw()`` of fresh noise per step."""
    args: dict             # temperature, top_p (tensors), sampler, top_k (static)
    draw: object           # () -> (batch, vocab) Gumbel noise tensor, or None for greedy


def sampling(sampler="greedy", temperature=1.0, top_k=None, top_p=None, seed=None, batch=1, vocab=None):
    """Check the sampler's arguments (the bad one is named) and build its ``Sampling``."""
    top_k, top_p = check_sampler(sampler, temperature, top_k, top_p)
    rng = np.random.default_rng(seed)
    draw = (lambda: ops.convert_to_tensor(gumbel_noise(rng, batch, vocab))) if sampler != "greedy" else (lambda: None)
    # Numbers that change between calls travel as tensors (no recompiling); the sampler
    # kind and top_k change the program's shape, so they are static.
    args = dict(temperature=_scalar(temperature, "float32"), top_p=_scalar(top_p or 1.0, "float32"),
                sampler=sampler, top_k=None if top_k is None else int(top_k))
    return Sampling(args, draw)


def check_prefill_chunk(prefill_chunk):
    """None, or a power of two (prompts are padded to powers of two, so the chunks tile them)."""
    if prefill_chunk is None:
        return
    if (not isinstance(prefill_chunk, (int, np.integer)) or isinstance(prefill_chunk, bool) or prefill_chunk < 1
            or prefill_chunk & (prefill_chunk - 1)):
        raise ValueError(f"prefill_chunk must be None or a power of two (16, 64, 512, ...), got {prefill_chunk!r}")


class Generator:
    """Compiled prefill, decode and append steps around a backbone, and the sampling loop."""

    def __init__(self, backbone):
        self.backbone = backbone
        # prefill(token_ids, start, caches, noise, temperature, top_p, sampler=, top_k=) -> (next ids, caches)
        self.prefill = compile_model_function(backbone, self._prefill_step, ("sampler", "top_k"), donate_argnums=(2,))
        # decode(token_ids, time, start, caches, noise, temperature, top_p, sampler=, top_k=) -> (next ids, caches)
        self.decode = compile_model_function(backbone, self._decode_step, ("sampler", "top_k"), donate_argnums=(3,))
        # append(token_ids, time, start, caches) -> caches
        self.append = compile_model_function(backbone, self._append_step, donate_argnums=(3,))

    # The compiled steps: a forward pass, then the sampler, all on the device.
    def _prefill_step(self, token_ids, start, caches, noise, temperature, top_p, sampler, top_k):
        logits, caches = self.backbone.prefill(token_ids, start, caches)
        return sample(logits, sampler, temperature, top_k, top_p, noise), caches

    def _decode_step(self, token_ids, time, start, caches, noise, temperature, top_p, sampler, top_k):
        logits, caches = self.backbone.decode(token_ids, time, start, caches)
        return sample(logits, sampler, temperature, top_k, top_p, noise), caches

    def _append_step(self, token_ids, time, start, caches):
        return self.backbone.extend(token_ids, time, start, caches)[1]      # the logits are never read

    def tokens(self, prompts: list[list[int]], max_new_tokens: int, sampler="greedy", temperature=1.0,
               top_k=None, top_p=None, seed=None, stop_ids=(), use_cache=True, prefill_chunk=None):
        """Yield the new token ids for every sequence, one step at a time: (batch,) int arrays.

        A sequence that produced a stop token keeps yielding it (``done`` rows
        are frozen); the loop ends when every row is done or after
        ``max_new_tokens`` steps.

        ``prefill_chunk`` (a power of two): feed a longer prompt in chunks of that many tokens,
        each appended to the cache at its time (chunked prefill). The attention scores of a
        chunk are (chunk, slots + chunk) instead of (prompt, prompt): memory stays bounded
        however long the prompt, and the output is the same.
        """
        check_prefill_chunk(prefill_chunk)
        batch, longest = len(prompts), max(len(p) for p in prompts)
        draws = sampling(sampler, temperature, top_k, top_p, seed, batch, self.backbone.config.vocab_size)
        prompt_len = bucket(longest)
        total = prompt_len + max_new_tokens
        cache_len = -(-total // 128) * 128
        token_ids = np.zeros((batch, prompt_len), np.int32)            # left padding with id 0
        start = np.array([prompt_len - len(p) for p in prompts], np.int32)
        for row, prompt in enumerate(prompts):
            token_ids[row, start[row]:] = prompt

        if not use_cache:        # the slow way, for comparison: rerun the whole sequence every step
            yield from self._tokens_without_cache(token_ids, start, max_new_tokens, draws, stop_ids)
            return

        caches = self.backbone.init_cache(batch, cache_len)
        start = ops.convert_to_tensor(start)
        if prefill_chunk is None or prefill_chunk >= prompt_len:
            next_ids, caches = self.prefill(ops.convert_to_tensor(token_ids), start, caches, draws.draw(), **draws.args)
        else:                    # both powers of two: the chunks tile the padded prompt exactly
            last = prompt_len - prefill_chunk
            for begin in range(0, last, prefill_chunk):
                chunk = ops.convert_to_tensor(token_ids[:, begin:begin + prefill_chunk])      # (batch, chunk)
                caches = self.append(chunk, _scalar(begin, "int32"), start, caches)
            next_ids, caches = self.decode(ops.convert_to_tensor(token_ids[:, last:]), _scalar(last, "int32"), start,
                                           caches, draws.draw(), **draws.args)               # samples after it
        yield from self.sample_loop(LiveCache(caches, prompt_len, start, next_ids), max_new_tokens, draws, stop_ids)

    def sample_loop(self, live: LiveCache, max_new_tokens: int, draws: Sampling, stop_ids=()):
        """The sampling loop: yield ``live.next_ids`` as (batch,) int arrays, feeding each one back.

        Every yielded step but the last is fed to the cache (``live`` is updated in place, so
        whoever started the loop finds the cache, and its time, where the loop left them).
        """
        stop = np.array(sorted(set(stop_ids)), np.int32)
        done, previous = np.zeros(ops.shape(live.start)[0], bool), None
        for step in range(max_new_tokens):
            ids = np.asarray(ops.convert_to_numpy(live.next_ids), np.int32)
            if previous is not None:
                ids = np.where(done, previous, ids)                      # finished rows stay frozen
            done |= np.isin(ids, stop)
            yield ids
            previous = ids
            if done.all() or step == max_new_tokens - 1:
                return
            live.next_ids, live.caches = self.decode(ops.convert_to_tensor(ids[:, None]), _scalar(live.time, "int32"),
                                                     live.start, live.caches, draws.draw(), **draws.args)
            live.time += 1

    def _tokens_without_cache(self, token_ids, start, max_new_tokens, draws, stop_ids):
        stop = np.array(sorted(set(stop_ids)), np.int32)
        done = np.zeros(len(token_ids), bool)
        for _ in range(max_new_tokens):
            prompt_len = token_ids.shape[1]
            padded = np.zeros((len(token_ids), bucket(prompt_len)), np.int32)
            padded[:, -prompt_len:] = token_ids
            shift = padded.shape[1] - prompt_len
            caches = self.backbone.init_cache(len(token_ids), padded.shape[1])
            next_ids, _ = self.prefill(ops.convert_to_tensor(padded), ops.convert_to_tensor(start + shift),
                                        caches, draws.draw(), **draws.args)
            ids = np.asarray(ops.convert_to_numpy(next_ids), np.int32)
            ids = np.where(done, token_ids[:, -1], ids)
            done |= np.isin(ids, stop)
            yield ids
            if done.all():
                return
            token_ids = np.concatenate([token_ids, ids[:, None]], axis=1)
