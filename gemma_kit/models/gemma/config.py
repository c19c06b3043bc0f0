"""Model configuration: every Gemma variant is a set of numbers, not a class.

Gemma 1, Gemma 2, Gemma 3 and CodeGemma share one decoder-only transformer.
What differs between them fits in a handful of fields:

| field                   | Gemma 1       | Gemma 2               | Gemma 3                      |
|-------------------------|---------------|-----------------------|------------------------------|
| ``layer_types``         | all "global"  | local, global, ...    | 5 x local, then 1 x global   |
| ``attn_soft_cap``       | None          | 50.0                  | None                         |
| ``final_soft_cap``      | None          | 30.0                  | None                         |
| ``use_post_norms``      | False         | True                  | True                         |
| ``use_qk_norm``         | False         | False                 | True                         |
| ``rope_base_local``     | 10,000        | 10,000                | 10,000                       |
| ``rope_base_global``    | 10,000        | 10,000                | 1,000,000                    |

``intermediate_dim`` follows the transformers convention: it is the width of
*one* of the two GeGLU branches (keras-hub stores twice this number).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from ...nn.config import SerializableConfig

LOCAL = "local"    # sliding-window attention: a query sees the last `sliding_window` keys
GLOBAL = "global"  # full causal attention: a query sees every earlier key


def gemma3_layer_types(num_layers: int, pattern: int = 6) -> Tuple[str, ...]:
    """Gemma 3: layer ``i`` is global when ``(i + 1) % 6 == 0``, else local."""
    return tuple(GLOBAL if (i + 1) % pattern == 0 else LOCAL for i in range(num_layers))


def gemma2_layer_types(num_layers: int) -> Tuple[str, ...]:
    """Gemma 2: even layers use the sliding window, odd layers are global."""
    return tuple(LOCAL if i % 2 == 0 else GLOBAL for i in range(num_layers))


@dataclasses.dataclass(frozen=True)
class GemmaConfig(SerializableConfig):
    """Hyper-parameters of a Gemma-family decoder (Gemma 1/2/3, CodeGemma)."""

    vocab_size: int
    hidden_dim: int
    num_layers: int
    num_query_heads: int
    num_kv_heads: int          # 1 = multi-query attention, < num_query_heads = grouped-query
    head_dim: int
    intermediate_dim: int      # width of one GeGLU branch (transformers' intermediate_size)
    layer_types: Tuple[str, ...] = ()
    sliding_window: Optional[int] = None
    query_pre_attn_scalar: Optional[float] = None  # queries are scaled by this ** -0.5
    attn_soft_cap: Optional[float] = None   # cap * tanh(scores / cap) before the softmax
    final_soft_cap: Optional[float] = None  # the same on the output logits
    use_post_norms: bool = False            # extra RMSNorm after attention and after the MLP
    use_qk_norm: bool = False               # RMSNorm on each query and key head (Gemma 3)
    rope_base_global: float = 10_000.0
    rope_base_local: float = 10_000.0
    rope_scaling_factor: float = 1.0        # linear position scaling on global layers (Gemma 3 4B+)
    rms_norm_eps: float = 1e-6
    rms_norm_unit_offset: bool = True       # RMSNorm multiplies by (1 + scale); Gemma 4: by scale
    max_sequence_length: int = 8192         # the longest prompt + continuation the model was trained for
    name: str = "gemma"

    value_norm = False   # not a field: Gemma 4's config says True (an RMSNorm without scale on values)

    def __post_init__(self):
        types = tuple(self.layer_types) or (GLOBAL,) * self.num_layers
        object.__setattr__(self, "layer_types", types)
        if self.query_pre_attn_scalar is None:
            object.__setattr__(self, "query_pre_attn_scalar", float(self.head_dim))
        problems = []
        if len(types) != self.num_layers:
            problems.append(f"layer_types has {len(types)} entries but num_layers={self.num_layers}")
        if any(t not in (LOCAL, GLOBAL) for t in types):
            problems.append(f"layer_types may only contain {LOCAL!r} or {GLOBAL!r}, got {sorted(set(types))}")
        if LOCAL in types and not self.sliding_window:
            problems.append("local layers need a positive sliding_window")
        if self.num_query_heads % self.num_kv_heads:
            problems.append(
                f"num_query_heads={self.num_query_heads} is not a multiple of num_kv_heads={self.num_kv_heads}"
            )
        self.check(problems, positive=("vocab_size", "hidden_dim", "num_layers", "num_query_heads",
                                        "num_kv_heads", "head_dim", "intermediate_dim"))

    @property
    def num_groups(self) -> int:
        """How many query heads share one key/value head."""
        return self.num_query_heads // self.num_kv_heads

    def rope_base(self, layer_index: int) -> float:
        return self.rope_base_local if self.layer_types[layer_index] == LOCAL else self.rope_base_global

    # Per-layer numbers. Every layer of Gemma 1-3 has the same; Gemma 4 (models/gemma4/config.py)
    # gives its global layers their own head size and KV heads, and its last layers borrowed keys.
    def head_dim_of(self, layer_index: int) -> int:
        return self.head_dim

    def kv_heads_of(self, layer_index: int) -> int:
        return self.num_kv_heads

    def mlp_dim_of(self, layer_index: int) -> int:
        return self.intermediate_dim

    def keys_are_values(self, layer_index: int) -> bool:
        return False

    def rope_fraction(self, layer_index: int) -> float:
        return 1.0

    def kv_sharing(self, layer_index: int):
        """None: the layer keeps its own keys and values (Gemma 4's shared layers say otherwise)."""
        return None

    def num_parameters(self) -> int:
        """Parameter count from the shapes alone: no weight is allocated."""
        d, h, kv, hd, f = (self.hidden_dim, self.num_query_heads, self.num_kv_heads,
                           self.head_dim, self.intermediate_dim)
        attention = d * h * hd * 2 + d * kv * hd * 2            # q, o and k, v projections
        mlp = 3 * d * f                                          # gate, up, down
        norms = 2 * d + (2 * d if self.use_post_norms else 0) + (2 * hd if self.use_qk_norm else 0)
        return self.vocab_size * d + self.num_layers * (attention + mlp + norms) + d

