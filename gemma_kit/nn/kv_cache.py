"""The KV cache: a ring buffer of past keys and values, one protocol for every attention layer.

Generating token ``t`` needs the keys and values of the tokens before it, which
never change: we keep them instead of recomputing them. Each attention layer's
cache is a pair ``(keys, values)``, each ``(batch, slots, num_kv_heads, head_dim)``.

A *ring buffer*: time step ``t`` lives in slot ``t % slots``. A global layer has a
slot for every step of the generation (``slots >= max_length``, so nothing is
overwritten); a sliding-window layer keeps only its window, and a new step
overwrites the oldest one, which has slid out of view. Memory then stays fixed
however long the generation runs.

One order for every layer and every chunk of new tokens (a prompt, one decoding
step, or k tokens appended at time ``t``):

    1. read:   the chunk attends to [the ring's earlier steps, its own fresh keys]
    2. write:  then its keys go into the ring, the last ``slots`` of them

Reading before writing means a chunk never overwrites a key that one of its own
queries still needs, whatever its length. A prompt at time 0 finds the ring
empty, so it reads only its own keys (``time`` is then the Python int 0).
``key_times`` gives the time step of every key read, for the mask (``nn/masks.py``).
"""

import math
import re

import keras
from keras import ops


def starts_empty(time) -> bool:
    """True for a chunk known, when the program is traced, to start at time 0 (nothing cached before it)."""
    return isinstance(time, int) and time == 0


def ring_slot_times(newest, slots):
    """(1, slots) int: the time step each slot holds once time ``newest`` is written.

    Slot ``s`` holds the latest step ``t <= newest`` with ``t % slots == s``; a
    negative value means the slot was never written.
    """
    slot = ops.arange(slots, dtype="int32")[None, :]
    return newest - (newest - slot) % slots


def key_times(time, slots, fresh_times):
    """(batch, keys) int: the time step of each key a chunk reads (``read``'s order).

    fresh_times: (batch, seq), the chunk's own steps ``time ... time + seq - 1``.
    """
    if starts_empty(time):
        return fresh_times
    ring = ring_slot_times(ops.cast(time, "int32") - 1, slots)                # written before this chunk
    ring = ops.broadcast_to(ring, (ops.shape(fresh_times)[0], slots))          # (batch, slots)
    return ops.concatenate([ring, fresh_times], axis=1)                        # (batch, slots + seq)


def read(ring, fresh, time):
    """What a chunk attends to: the ring's earlier steps, then its own ``fresh`` (batch, seq, heads, dim)."""
    if starts_empty(time):
        return fresh
    return ops.concatenate([ring, ops.cast(fresh, ring.dtype)], axis=1)       # (batch, slots + seq, heads, dim)


def write(ring, fresh, time):
    """The ring after storing ``fresh`` (batch, seq, heads, dim) for steps ``time ... time + seq - 1``."""
    slots, seq = ring.shape[1], fresh.shape[1]
    fresh = ops.cast(fresh, ring.dtype)
    if starts_empty(time):                    # a prompt: step t in slot t % slots, the last `slots` steps survive
        if seq >= slots:                      # step seq - slots goes to slot seq % slots
            return ops.roll(fresh[:, seq - slots:], seq % slots, axis=1)
        return ops.slice_update(ring, [0, 0, 0, 0], fresh)
    time = ops.cast(time, "int32")
    if seq == 1:                              # one decoding step: overwrite the oldest slot
        return ops.slice_update(ring, [0, time % slots, 0, 0], fresh)
    if seq > slots:                           # a chunk longer than the ring: its last `slots` steps survive
        fresh, time, seq = fresh[:, seq - slots:], time + (seq - slots), slots
    # A chunk at a time known only when it runs: a one-hot (seq, slots) map of where each step goes.
    where = ops.one_hot((time + ops.arange(seq, dtype="int32")) % slots, slots)       # (seq, slots)
    hit = ops.cast(ops.sum(where, axis=0) > 0, ring.dtype)[None, :, None, None]       # (1, slots, 1, 1)
    placed = ops.einsum("sl,bshd->blhd", ops.cast(where, ring.dtype), fresh)          # (batch, slots, heads, dim)
    return ring * (1 - hit) + placed


def update(cache, k, v, time):
    """``(keys, values, new_cache)`` for a chunk's fresh ``k`` and ``v`` (batch, seq, kv_heads, head_dim).

    Without a cache (scoring a whole sequence) the chunk sees only itself and nothing is kept.
    """
    if cache is None:
        return k, v, None
    ring_k, ring_v = cache
    return read(ring_k, k, time), read(ring_v, v, time), (write(ring_k, k, time), write(ring_v, v, time))


def empty(batch_size, slots, num_kv_heads, head_dim, dtype):
    """A fresh ``(keys, values)`` ring, all zeros (every slot unwritten)."""
    shape = (batch_size, slots, num_kv_heads, head_dim)
    return ops.zeros(shape, dtype), ops.zeros(shape, dtype)


def cache_bytes(caches) -> int:
    """Bytes held by a generation cache: any nesting of lists and tuples of tensors (every family's)."""
    if isinstance(caches, (list, tuple)):
        return sum(cache_bytes(part) for part in caches)
    bits = int(re.search(r"\d+$", keras.backend.standardize_dtype(caches.dtype)).group())   # float32 -> 32
    return math.prod(caches.shape) * bits // 8
