"""The Griffin / RecurrentGemma model: embedding, residual blocks, tied output.

    x = embed(token_ids) * bfloat16(sqrt(width))     # (batch, seq, width); the scale rounded as in training
    for block in blocks: x = block(x)                # recurrent or local-attention residual blocks
    logits = final_norm(x) @ embed.T                 # (batch, seq, vocab), tied weights, float32
    logits = 30 * tanh(logits / 30)                  # logits_soft_cap

The same entry points as ``GemmaBackbone``, so ``Generator``, ``GemmaModel`` and
the CLI drive it unchanged:
- ``call(token_ids or {"token_ids", "padding_mask", "segment_pos"})``: logits for every position;
- ``init_cache`` / ``prefill`` / ``decode``: generation with a cache of *fixed size*
  (per recurrent block the RG-LRU state and the last 3 convolution inputs, per
  attention block a ring buffer of ``attention_window_size`` keys and values).

Positions and documents. ``segment_pos`` is each token's position in its own
document, as in the official code: 0 marks a document start, where the RG-LRU
and the convolution reset and attention stops looking back. A left-padded
prompt gets ``segment_pos = time - start``, clipped at 0: every pad token is a
one-token document, and the first real token starts a fresh one, so padding
cannot leak into the answer.

Names follow DeepMind's ``recurrentgemma/jax/griffin.py`` (``Griffin``).
"""

import math
import re

import keras
from keras import ops
from keras_hub.layers import ReversibleEmbedding

from ..layers import RMSNorm, ring_slot_times
from ..lm_backbone import LanguageModelBackbone
from .config import ATTENTION, GriffinConfig
from .residual_block import ResidualBlock


def local_attention_mask(query_times, key_times, window, query_segments=None, key_segments=None, key_valid=None):
    """(batch, queries, keys) bool: causal, at most ``window`` steps back, same document, real key.

    A query at time ``q`` sees keys ``q - window ... q``: ``window + 1`` of them.
    """
    q, k = query_times[:, :, None], key_times[:, None, :]
    mask = ops.logical_and(k <= q, q - k <= window)
    if query_segments is not None:
        mask = ops.logical_and(mask, query_segments[:, :, None] == key_segments[:, None, :])
    if key_valid is not None:
        mask = ops.logical_and(mask, key_valid[:, None, :])
    return mask


def document_ids(segment_pos):
    """(batch, seq) int: which document each token belongs to (a new one wherever segment_pos is 0)."""
    return ops.cumsum(ops.cast(segment_pos == 0, "int32"), axis=1)


def cache_bytes(caches) -> int:
    """Bytes held by a generation cache (a list of per-block tuples of tensors)."""
    total = 0
    for tensor in (t for block_cache in caches for t in block_cache):
        bits = int(re.search(r"\d+$", keras.backend.standardize_dtype(tensor.dtype)).group())   # float32 -> 32
        total += math.prod(tensor.shape) * bits // 8
    return total


@keras.saving.register_keras_serializable(package="gemma_kit")
class GriffinBackbone(LanguageModelBackbone):
    config_class = GriffinConfig

    def __init__(self, config: GriffinConfig, dtype=None, random_init: bool = True, **kwargs):
        """``random_init=False`` fills the weights with zeros: loaders overwrite every weight anyway."""
        super().__init__(config, dtype=dtype, **kwargs)
        policy = self.dtype_policy
        kernel_init = "glorot_uniform" if random_init else "zeros"
        embed_init = keras.initializers.RandomNormal(stddev=config.width ** -0.5) if random_init else "zeros"
        self.token_embedding = ReversibleEmbedding(
            config.vocab_size, config.width, tie_weights=True, logit_soft_cap=config.logits_soft_cap,
            reverse_dtype="float32", embeddings_initializer=embed_init, name="token_embedding", dtype=policy)
        self.blocks = [ResidualBlock(config, i, kernel_initializer=kernel_init, name=f"block_{i}", dtype=policy)
                       for i in range(config.num_blocks)]
        self.final_norm = RMSNorm(1e-6, name="final_norm", dtype=policy)
        self.build(None)

    def build(self, input_shape=None):
        self.token_embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, self.config.width))
        self.final_norm.build((None, None, self.config.width))
        self.built = True

    # -- the forward pass, shared by every entry point ------------------------------------------
    def run_blocks(self, token_ids, segment_pos, mask, caches=None, time=None, capture=None):
        """Hidden states (batch, seq, width) after the final norm, and the new caches.

        ``capture``: an optional dict (``gemma_kit.visualize``; generation never passes one),
        filled with one entry per block in each of the lists ``"attention"`` (probabilities
        (batch, heads, queries, keys), None for recurrent blocks), ``"mask"`` (the boolean mask an
        attention block used), ``"input_gate"``, ``"a_gate"`` and ``"decay"`` (float32 (batch, seq,
        lru_width), None for attention blocks) and ``"hidden"`` (the residual stream after the block).
        """
        x = self.token_embedding(token_ids)                                   # (batch, seq, width)
        x = x * ops.cast(self.config.embedding_scale, x.dtype)
        new_caches = []
        for i, block in enumerate(self.blocks):
            x, cache, *extra = block(x, segment_pos, mask, cache=None if caches is None else caches[i], time=time,
                                     return_internals=capture is not None)
            new_caches.append(cache)
            if capture is not None:
                recurrent = block.block_type != ATTENTION
                for key in ("attention", "input_gate", "a_gate", "decay"):
                    capture.setdefault(key, []).append(extra[0].get(key))
                capture.setdefault("mask", []).append(None if recurrent else mask)
                capture.setdefault("hidden", []).append(x)
        return self.final_norm(x), new_caches

    @property
    def has_attention(self) -> bool:
        return ATTENTION in self.config.block_types

    # -- entry point 1: every position (scoring, training) ----------------------------------------
    def hidden_states(self, inputs, capture=None):
        """``call`` without the output layer: (batch, seq, width) after the final norm."""
        token_ids, padding_mask, segment_pos = inputs, None, None
        if isinstance(inputs, dict):
            token_ids, padding_mask, segment_pos = (inputs["token_ids"], inputs.get("padding_mask"),
                                                    inputs.get("segment_pos"))
        token_ids = ops.cast(token_ids, "int32")
        batch, seq = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        times = ops.broadcast_to(ops.arange(seq, dtype="int32")[None, :], (batch, seq))
        if padding_mask is not None:
            padding_mask = ops.cast(padding_mask, "bool")
        if segment_pos is None:
            segment_pos = times if padding_mask is None else \
                ops.maximum(ops.cumsum(ops.cast(padding_mask, "int32"), axis=1) - 1, 0)
        segment_pos = ops.cast(segment_pos, "int32")
        mask = None
        if self.has_attention:
            docs = document_ids(segment_pos)
            mask = local_attention_mask(times, times, self.config.attention_window_size, docs, docs, padding_mask)
        hidden, _ = self.run_blocks(token_ids, segment_pos, mask, capture=capture)
        return hidden

    # -- entry points 2 and 3: generation with a fixed-size cache ---------------------------------
    def cache_lengths(self, max_length):
        """Past time steps each block keeps: the window (or ``max_length`` if shorter) for attention
        blocks, the convolution's last ``conv1d_temporal_width - 1`` inputs for recurrent ones."""
        c = self.config
        return [min(c.attention_window_size, max_length) if t == ATTENTION else c.conv1d_temporal_width - 1
                for t in c.block_types]

    def init_cache(self, batch_size, max_length):
        """A list with one tuple per block: ``(rg_lru_state, conv1d_state)`` or ``(keys, values)``."""
        c, dtype = self.config, self.compute_dtype
        caches = []
        for block_type, length in zip(c.block_types, self.cache_lengths(max_length)):
            if block_type == ATTENTION:                 # ring buffers (batch, slots, head_dim)
                caches.append((ops.zeros((batch_size, length, c.head_dim), dtype),
                               ops.zeros((batch_size, length, c.head_dim), dtype)))
            else:                                       # (batch, lru_width) float32, (batch, 3, lru_width)
                caches.append((ops.zeros((batch_size, c.lru_width), "float32"),
                               ops.zeros((batch_size, length, c.lru_width), dtype)))
        return caches

    def prefill(self, token_ids, start, caches):
        """Run left-padded prompts (batch, seq) whose real tokens begin at ``start`` (batch,).

        Returns the float32 logits of the last position (batch, vocab) and the filled caches.
        """
        batch, seq = ops.shape(token_ids)[0], token_ids.shape[1]
        times = ops.broadcast_to(ops.arange(seq, dtype="int32")[None, :], (batch, seq))
        segment_pos = ops.maximum(times - ops.cast(start, "int32")[:, None], 0)   # pads: one-token documents
        mask = None
        if self.has_attention:
            docs = document_ids(segment_pos)
            mask = local_attention_mask(times, times, self.config.attention_window_size, docs, docs)
        hidden, caches = self.run_blocks(token_ids, segment_pos, mask, caches=caches)
        return self.logits_from_hidden(hidden[:, -1]), caches

    def decode(self, token_ids, time, start, caches):
        """One step: ``token_ids`` (batch, 1) at time step ``time`` (a scalar); returns (logits, caches)."""
        time = ops.cast(time, "int32")
        start = ops.cast(start, "int32")[:, None]                              # (batch, 1)
        query_times = ops.broadcast_to(time, ops.shape(start))                 # (batch, 1)
        mask = None
        if self.has_attention:
            slots = next(c[0].shape[1] for c, t in zip(caches, self.config.block_types) if t == ATTENTION)
            # The ring holds earlier steps only (this step's key joins below): newest = time - 1.
            slot_times = ring_slot_times(time - 1, slots)
            key_times = ops.concatenate([ops.broadcast_to(slot_times, (ops.shape(start)[0], slots)),
                                         query_times], axis=1)                 # (batch, slots + 1)
            mask = local_attention_mask(query_times, key_times, self.config.attention_window_size,
                                        key_valid=key_times >= start)
        hidden, caches = self.run_blocks(token_ids, query_times - start, mask, caches=caches, time=time)
        return self.logits_from_hidden(hidden[:, -1]), caches
