"""RecurrentGemma (Griffin) as numbers: ``GriffinConfig`` (the official checkpoints are in ``presets.py``).

Griffin (De et al. 2024, "Griffin: Mixing Gated Linear Recurrences with Local
Attention for Efficient Language Models") stacks *residual blocks*; each mixes
information across time with either a recurrent block (the RG-LRU) or a local
multi-query attention block, then applies a GeGLU MLP. RecurrentGemma repeats
(recurrent, recurrent, attention). The field names are those of DeepMind's
``recurrentgemma`` package (``recurrentgemma/common.py``, ``GriffinConfig``), so a
keyword argument means the same thing here and there:

| field                          | 2B        | 9B        |
|--------------------------------|-----------|-----------|
| ``width``                      | 2,560     | 4,096     |
| ``mlp_expanded_width``         | 7,680     | 12,288    |
| ``num_heads``                  | 10        | 16        |
| ``lru_width``                  | 2,560     | 4,096     |
| blocks (R, R, A, ...)          | 26        | 38        |
| ``attention_window_size``      | 2,048     | 2,048     |
| ``logits_soft_cap``            | 30.0      | 30.0      |
| ``embeddings_scale_by_sqrt_dim`` | True    | True      |

Three of these cannot be read from a checkpoint's tensor shapes (the window, the
soft-cap and the embedding scale flag): loaders default them to the official
values above, as ``GriffinConfig.from_flax_params_or_variables`` does.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Optional, Tuple

from ...nn.config import SerializableConfig

RECURRENT = "recurrent"   # recurrentgemma: TemporalBlockType.RECURRENT
ATTENTION = "attention"   # recurrentgemma: TemporalBlockType.ATTENTION


def griffin_block_types(num_blocks: int) -> Tuple[str, ...]:
    """The RecurrentGemma pattern: (recurrent, recurrent, attention) repeated."""
    return tuple((RECURRENT, RECURRENT, ATTENTION)[i % 3] for i in range(num_blocks))


def round_to_bfloat16(value: float) -> float:
    """``value`` rounded to the nearest bfloat16 (round half to even), as a Python float.

    bfloat16 keeps the top 16 bits of a float32 (8 exponent bits, 7 mantissa bits).
    Griffin was trained with ``sqrt(width)`` cast to bfloat16, so the official code
    multiplies embeddings by 50.5 for width 2560, not by 50.596.
    """
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


@dataclasses.dataclass(frozen=True)
class GriffinConfig(SerializableConfig):
    """Hyper-parameters of a Griffin / RecurrentGemma model (recurrentgemma's names)."""

    vocab_size: int
    width: int                                 # the residual stream (embedding) width
    mlp_expanded_width: int                    # width of one GeGLU branch
    num_heads: int                             # attention heads, and RG-LRU gate blocks
    lru_width: Optional[int] = None            # width of the recurrence; None = width
    block_types: Tuple[str, ...] = ()          # "recurrent" or "attention" per residual block
    attention_window_size: int = 2048          # a query sees this many earlier keys, plus itself
    logits_soft_cap: Optional[float] = 30.0    # cap * tanh(logits / cap); 0 or None = off
    embeddings_scale_by_sqrt_dim: bool = True  # multiply embeddings by bfloat16(sqrt(width))
    conv1d_temporal_width: int = 4             # the causal depthwise convolution's width
    max_sequence_length: int = 8192            # training length; the cache does not grow with it
    name: str = "recurrent_gemma"

    def __post_init__(self):
        types = tuple(str(t).lower() for t in self.block_types)
        object.__setattr__(self, "block_types", types)
        object.__setattr__(self, "lru_width", int(self.lru_width or self.width))
        if not self.logits_soft_cap:
            object.__setattr__(self, "logits_soft_cap", None)
        problems = []
        if not types:
            problems.append("block_types is empty: list at least one 'recurrent' or 'attention' block")
        if any(t not in (RECURRENT, ATTENTION) for t in types):
            problems.append(f"block_types may only contain {RECURRENT!r} or {ATTENTION!r}, got {sorted(set(types))}")
        if self.num_heads > 0 and self.width % self.num_heads:
            problems.append(f"width={self.width} is not a multiple of num_heads={self.num_heads}")
        if self.num_heads > 0 and self.lru_width % self.num_heads:
            problems.append(f"lru_width={self.lru_width} is not a multiple of num_heads={self.num_heads}")
        if ATTENTION in types and self.num_heads > 0 and (self.width // self.num_heads) % 4:
            problems.append(f"head_dim={self.width // self.num_heads} must be a multiple of 4 "
                            "(RoPE rotates pairs in the first half of each head)")
        self.check(problems, positive=("vocab_size", "width", "mlp_expanded_width", "num_heads", "lru_width",
                                        "attention_window_size", "conv1d_temporal_width", "max_sequence_length"))

    @property
    def num_blocks(self) -> int:
        return len(self.block_types)

    num_layers = num_blocks                    # the name every family's backbone uses

    @property
    def layer_types(self) -> Tuple[str, ...]:
        """The name every family's config uses for its layer pattern."""
        return self.block_types

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def embedding_scale(self) -> float:
        """What embeddings are multiplied by: bfloat16(sqrt(width)), or 1."""
        return round_to_bfloat16(math.sqrt(self.width)) if self.embeddings_scale_by_sqrt_dim else 1.0

    def num_parameters(self) -> int:
        """Parameter count from the shapes alone: no weight is allocated."""
        d, f, h, lru, hd = self.width, self.mlp_expanded_width, self.num_heads, self.lru_width, self.head_dim
        mlp = 2 * (d * f + f) + (f * d + d)                        # ffw_up (two branches), ffw_down
        recurrent = (2 * (d * lru + lru)                           # linear_x, linear_y
                     + (lru * d + d)                               # linear_out
                     + (self.conv1d_temporal_width + 1) * lru      # conv_1d w, b
                     + lru + 2 * (h * (lru // h) ** 2 + lru))      # rg_lru: a_param, input_gate, a_gate
        attention = d * d + 2 * d * hd + (d * d + d)               # proj_q, proj_k + proj_v (MQA), proj_final
        blocks = sum(2 * d + mlp + (recurrent if t == RECURRENT else attention) for t in self.block_types)
        return self.vocab_size * d + blocks + d                    # tied embedding, blocks, final_norm
