"""Choosing the next token from the logits: greedy, temperature, top-k, top-p.

Every sampler except greedy draws from ``softmax(logits / temperature)``,
restricted to a set of candidates:

- ``"temperature"``: every token is a candidate;
- ``"top_k"``: the ``top_k`` most likely tokens (Fan et al., 2018);
- ``"top_p"``: the smallest set of most likely tokens whose probabilities add
  up to at least ``top_p`` ("nucleus sampling", Holtzman et al., 2019).

The draw uses the Gumbel-max trick: ``argmax(logits + g)`` with ``g`` drawn
from a standard Gumbel distribution is a sample from ``softmax(logits)``. The
noise ``g`` comes from NumPy with the user's seed, so the same seed gives the
same text on JAX, TensorFlow and PyTorch.
"""

import numpy as np
from keras import ops

SAMPLERS = ("greedy", "temperature", "top_k", "top_p")
DEFAULT_TOP_K, DEFAULT_TOP_P = 40, 0.9


def check_sampler(sampler, temperature, top_k=None, top_p=None):
    """Validate user arguments early, with a message that names the bad one.

    Returns ``(top_k, top_p)`` with defaults filled in (40 and 0.9).
    """
    if sampler == "top_k" and top_k is None:
        top_k = DEFAULT_TOP_K
    if sampler == "top_p" and top_p is None:
        top_p = DEFAULT_TOP_P
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler != "greedy" and not (temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if sampler == "top_k" and not (isinstance(top_k, (int, np.integer)) and top_k >= 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if sampler == "top_p" and not (0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    return top_k, top_p


def gumbel_noise(rng: np.random.Generator, batch: int, vocab: int) -> np.ndarray:
    return rng.gumbel(size=(batch, vocab)).astype(np.float32)     # (batch, vocab)


def sample(logits, sampler="greedy", temperature=1.0, top_k=None, top_p=None, noise=None):
    """Next token ids (batch,) from float32 ``logits`` (batch, vocab)."""
    logits = ops.convert_to_tensor(logits)
    if sampler == "greedy":
        return ops.argmax(logits, axis=-1)
    logits = logits / temperature
    if sampler == "top_k":
        kth_largest = ops.top_k(logits, k=int(top_k), sorted=True)[0][:, -1:]   # (batch, 1)
        logits = ops.where(logits >= kth_largest, logits, -np.inf)
    elif sampler == "top_p":
        probs = ops.softmax(logits, axis=-1)
        descending = ops.flip(ops.sort(probs, axis=-1), axis=-1)                # (batch, vocab)
        mass_before = ops.cumsum(descending, axis=-1) - descending              # probability of likelier tokens
        # The least likely token still needed to reach top_p: keep every token at least that likely.
        kept = ops.where(mass_before < top_p, descending, 2.0)
        cutoff = ops.min(kept, axis=-1, keepdims=True)                          # (batch, 1)
        logits = ops.where(probs >= cutoff, logits, -np.inf)
    return ops.argmax(logits + noise, axis=-1)
