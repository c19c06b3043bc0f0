"""Gemma 4's configuration: Gemma 3's numbers, plus the fields of what Gemma 4 added.

``Gemma4Config`` *is* a ``GemmaConfig`` (``models/gemma/config.py``): the same
decoder, layer pattern and window, with these differences (transformers'
``Gemma4TextConfig`` name in brackets):

| field                        | what it changes                                                     |
|------------------------------|---------------------------------------------------------------------|
| ``rms_norm_unit_offset``     | False: RMSNorm multiplies by ``scale`` (init 1), not ``1 + scale``  |
| ``query_pre_attn_scalar``    | 1.0: attention scores are not divided by sqrt(head_dim)            |
| ``global_head_dim``          | global layers' own head size, 512 against 256 [global_head_dim]     |
| ``num_global_kv_heads``      | global layers' own KV head count [num_global_key_value_heads]       |
| ``rope_fraction_global``     | share of a global head RoPE rotates [partial_rotary_factor], 0.25   |
| ``attention_k_eq_v``         | global layers have no value projection: values are the keys         |
| ``num_kv_shared_layers``     | the last N layers reuse earlier layers' keys/values, no cache        |
| ``use_double_wide_mlp``      | those shared layers have an MLP twice as wide                       |
| ``per_layer_input_dim``      | per-layer embeddings (PLE, E2B/E4B) [hidden_size_per_layer_input]   |
| ``num_experts`` ...          | the mixture-of-experts block (26B-A4B) [enable_moe_block]           |

Every layer has a *KV sharing mode* (``kv_sharing``): None (keeps its own
cache), ``"store"`` (the last non-shared layer of its type: it lends its keys
and values) or ``"reuse"`` (one of the last ``num_kv_shared_layers``: it borrows
them, so it has no key/value projection and no cache).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from ..gemma.config import GLOBAL, GemmaConfig, gemma3_layer_types


def gemma4_layer_types(num_layers: int, pattern: int = 6):
    """Sliding ("local") layers with a global one every ``pattern``; the last layer is always global."""
    types = list(gemma3_layer_types(num_layers, pattern))
    types[-1] = GLOBAL
    return tuple(types)


@dataclasses.dataclass(frozen=True)
class Gemma4Config(GemmaConfig):
    """Hyper-parameters of a Gemma 4 text decoder (E2B, E4B, 26B-A4B, 31B)."""

    # Gemma 3's fields with Gemma 4's defaults.
    query_pre_attn_scalar: Optional[float] = 1.0   # scores = q . k, no 1/sqrt(d)
    use_post_norms: bool = True
    use_qk_norm: bool = True
    rope_base_global: float = 1_000_000.0
    rms_norm_unit_offset: bool = False
    # What Gemma 4 added.
    global_head_dim: Optional[int] = None          # None: the same as head_dim
    num_global_kv_heads: Optional[int] = None      # None: the same as num_kv_heads
    rope_fraction_global: float = 1.0              # "proportional" RoPE on global layers
    attention_k_eq_v: bool = False
    num_kv_shared_layers: int = 0
    use_double_wide_mlp: bool = False
    per_layer_input_dim: int = 0                   # 0: no per-layer embeddings
    per_layer_vocab_size: Optional[int] = None     # None: vocab_size
    num_experts: int = 0                           # 0: no mixture-of-experts block
    num_experts_per_token: int = 0                 # top-k
    expert_intermediate_dim: int = 0               # width of one expert's GeGLU branch
    name: str = "gemma4"

    value_norm = True    # values get an RMSNorm without a scale

    def __post_init__(self):
        super().__post_init__()
        problems = []
        if self.layer_types[-1] != GLOBAL:
            problems.append("the last layer of a Gemma 4 model must be global")
        if not 0 <= self.num_kv_shared_layers <= self.num_layers:
            problems.append(f"num_kv_shared_layers={self.num_kv_shared_layers} is not in 0..{self.num_layers}")
        elif self.num_kv_shared_layers:
            first = self.num_layers - self.num_kv_shared_layers
            missing = set(self.layer_types[first:]) - set(self.layer_types[:first])
            if missing:
                problems.append(f"KV-shared layers of type {sorted(missing)} have no earlier layer of that "
                                "type to borrow keys and values from")
        if self.num_query_heads % self.global_kv_heads:
            problems.append(f"num_query_heads={self.num_query_heads} is not a multiple of "
                            f"num_global_kv_heads={self.global_kv_heads}")
        if not 0.0 < self.rope_fraction_global <= 1.0:
            problems.append(f"rope_fraction_global must be in (0, 1], got {self.rope_fraction_global}")
        if self.num_experts and not 0 < self.num_experts_per_token <= self.num_experts:
            problems.append(f"num_experts_per_token={self.num_experts_per_token} must be in 1..{self.num_experts}")
        if self.num_experts and self.expert_intermediate_dim <= 0:
            problems.append("a mixture-of-experts block needs a positive expert_intermediate_dim")
        self.check(problems)

    # -- per-layer numbers --------------------------------------------------------------------------
    @property
    def global_kv_heads(self) -> int:
        return self.num_global_kv_heads or self.num_kv_heads

    def head_dim_of(self, i: int) -> int:
        return (self.global_head_dim or self.head_dim) if self.layer_types[i] == GLOBAL else self.head_dim

    def kv_heads_of(self, i: int) -> int:
        return self.global_kv_heads if self.layer_types[i] == GLOBAL else self.num_kv_heads

    def keys_are_values(self, i: int) -> bool:
        return self.attention_k_eq_v and self.layer_types[i] == GLOBAL

    def rope_fraction(self, i: int) -> float:
        return self.rope_fraction_global if self.layer_types[i] == GLOBAL else 1.0

    def kv_sharing(self, i: int) -> Optional[str]:
        """None, ``"store"`` (lends its keys/values) or ``"reuse"`` (borrows them); transformers'
        ``kv_sharing_modes``: the last non-shared layer of each type stores, even when no layer reuses."""
        first_shared = self.num_layers - self.num_kv_shared_layers
        if i >= first_shared:
            return "reuse"
        if self.num_kv_shared_layers and i == max(j for j in range(first_shared)
                                                   if self.layer_types[j] == self.layer_types[i]):
            return "store"
        return None

    def mlp_dim_of(self, i: int) -> int:
        wide = self.use_double_wide_mlp and self.kv_sharing(i) == "reuse"
        return self.intermediate_dim * (2 if wide else 1)

    # -- parameter counts, from the shapes alone ----------------------------------------------------
    def per_layer_embedding_parameters(self) -> int:
        """The PLE table: one row per token, ``per_layer_input_dim`` numbers per layer."""
        return (self.per_layer_vocab_size or self.vocab_size) * self.num_layers * self.per_layer_input_dim

    def _layer_parameters(self, i: int, experts: int) -> int:
        d, h, hd, kv = self.hidden_dim, self.num_query_heads, self.head_dim_of(i), self.kv_heads_of(i)
        count = 2 * d * h * hd + hd                                   # q, o projections; q-norm
        if self.kv_sharing(i) != "reuse":
            count += d * kv * hd * (1 if self.keys_are_values(i) else 2) + hd   # k (v); k-norm
        count += 3 * d * self.mlp_dim_of(i) + 4 * d + 1                 # GeGLU; 4 norms; layer_scalar
        if self.per_layer_input_dim:                                   # gate, projection, norm
            count += 2 * d * self.per_layer_input_dim + d
        if self.num_experts:                                           # router; experts; 3 norms
            count += d * self.num_experts + d + self.num_experts + 3 * d
            count += experts * 3 * d * self.expert_intermediate_dim
        return count

    def num_parameters(self) -> int:
        """Every stored weight, PLE table and all experts included (what the checkpoint holds)."""
        return self._count(self.num_experts) + self.per_layer_embedding_parameters()

    def effective_parameters(self) -> int:
        """Without the PLE table, which sits in slow memory and is read one row per token: the "E" in E2B."""
        return self._count(self.num_experts)

    def active_parameters(self) -> int:
        """Weights one token computes with: the effective count, with only ``num_experts_per_token`` experts."""
        return self._count(self.num_experts_per_token)

    def _count(self, experts: int) -> int:
        d = self.hidden_dim
        count = self.vocab_size * d + d                                 # tied embedding; final norm
        if self.per_layer_input_dim:                                    # context projection; its norm
            count += d * self.num_layers * self.per_layer_input_dim + self.per_layer_input_dim
        return count + sum(self._layer_parameters(i, experts) for i in range(self.num_layers))
