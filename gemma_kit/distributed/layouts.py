"""Layout maps: which axis of which weight is split over the mesh's "model" axis.

A layout gives, for each axis of a weight, the mesh axis it is split over
(``"model"``) or ``None`` (every device holds all of it). We follow Megatron-LM
(Shoeybi et al., 2019): in each block the first matmul is split by *output*
columns and the second by *input* rows, so every device computes whole heads (or
whole MLP columns) and one sum across devices finishes the block::

    query/key/value kernel  (hidden, heads * head_dim)   (None, "model")   columns = whole heads
    attention_output kernel (heads * head_dim, hidden)   ("model", None)
    mlp gate/up kernel      (hidden, mlp)                (None, "model")
    mlp down kernel         (mlp, hidden)                ("model", None)
    token embedding         (vocab, hidden)              ("model", None)   also the tied output layer
    norms, biases of outputs                            replicated (tiny)

The one rule that keeps this safe: **shard an axis only when it splits into whole
heads** (``num_heads % model == 0``; for the MLP and the vocabulary, when the width
divides). A single key/value head (multi-query attention: Gemma 2B, Gemma 3 270M
and 1B, every RecurrentGemma attention block) is replicated, never cut in pieces.
keras-hub's Gemma layout map splits the heads axis unconditionally and fails on
``gemma_2b_en`` (keras-hub issue 1613); Gemma 3 and RecurrentGemma have none there.

We shard over "model" only; the "batch" axis holds replicas (keras-hub also splits
weights over its data axis, FSDP-style, which saves memory but is harder to read).
The maths does not depend on the layout: JAX (GSPMD) inserts the communication, so
any layout gives the same numbers; a good layout gives less memory and traffic.

RecurrentGemma: the RG-LRU's gates are block-diagonal with ``num_heads`` blocks, so
the recurrence width is split in whole blocks, like heads; the recurrence then runs
independently on each device. LoRA adapters (``lora_kernel_a/b``) are small and replicated.

Gemma 4 (``gemma4_rules``) keeps Gemma 3's attention and MLP rules, applied per
group of layers, since its layers differ: global layers have their own head size
and KV head count (one KV head in several models: never split), the last
layers of E2B/E4B borrow keys/values (no key/value kernels) and may have an MLP
twice as wide. Two new kinds of weight::

    experts gate/up        (experts, hidden, expert_dim)   ("model", None, None)   expert parallelism
    experts down           (experts, expert_dim, hidden)   ("model", None, None)
    PLE table              (vocab, layers * dim)           (None, "model")         the packed axis
    PLE context projection (hidden, layers * dim)          (None, "model")

Expert parallelism (GShard, Lepikhin et al., 2020) puts whole experts on each
device; when the expert count does not divide, each expert's GeGLU width is split
instead, Megatron-style. The router, its scales and every norm stay replicated; LoRA
pairs on the experts (experts, in, rank), (experts, rank, out) go with their experts.
"""

from __future__ import annotations

import dataclasses
import re
from typing import List, Optional, Tuple

from ..models import for_family
from ..models.gemma.config import GemmaConfig
from ..models.gemma4.config import Gemma4Config
from ..models.griffin.config import ATTENTION, GriffinConfig
from .mesh import MODEL, parse_mesh


@dataclasses.dataclass(frozen=True)
class Rule:
    pattern: str                   # a regex that must match a variable's whole path
    axes: Tuple[Optional[str], ...]  # the mesh axis each array axis is split over (None: not split)
    why: str                       # one line for learners: why this layout


def splits(size: int, model: int) -> bool:
    """True when ``size`` things (heads, columns, rows) divide evenly over ``model`` devices."""
    return model > 1 and size % model == 0


def _replicated(pattern, units, unit_name, model, rank):
    why = ("a model axis of 1: nothing is split" if model == 1
           else f"{units} {unit_name} do not split over {model} devices: replicated")
    return Rule(pattern, (None,) * rank, why)


def _column(pattern, units, unit_name, model, rank=2):
    """Split the last axis (output columns) when ``units`` (heads, blocks, columns) divide."""
    if splits(units, model):
        return Rule(pattern, (None,) * (rank - 1) + (MODEL,), f"{units} {unit_name} / {model} devices")
    return _replicated(pattern, units, unit_name, model, rank)


def _row(pattern, units, unit_name, model, rank=2):
    """Split the first axis (input rows) when ``units`` divide."""
    if splits(units, model):
        return Rule(pattern, (MODEL,) + (None,) * (rank - 1), f"{units} {unit_name} / {model} devices")
    return _replicated(pattern, units, unit_name, model, rank)


def _split_axis(pattern, units, unit_name, model, rank, axis):
    """Split ``axis`` when ``units`` divide (``_column``/``_row`` for any axis of a 3-D weight)."""
    if splits(units, model):
        return Rule(pattern, tuple(MODEL if a == axis else None for a in range(rank)),
                    f"{units} {unit_name} / {model} devices")
    return _replicated(pattern, units, unit_name, model, rank)


def _embedding(vocab, hidden, model):
    if splits(vocab, model):
        return Rule(r".*/token_embedding/embeddings", (MODEL, None), f"{vocab} vocabulary rows / {model} devices")
    return _column(r".*/token_embedding/embeddings", hidden, "embedding columns", model)


def gemma_rules(config: GemmaConfig, model: int) -> List[Rule]:
    """Gemma 1/2/3 and CodeGemma (one ``GemmaBackbone``)."""
    c = config
    return [
        _embedding(c.vocab_size, c.hidden_dim, model),
        _column(r".*/attention/query/kernel", c.num_query_heads, "query heads", model),
        _column(r".*/attention/(key|value)/kernel", c.num_kv_heads, "key/value heads", model),
        _row(r".*/attention/attention_output/kernel", c.num_query_heads, "query heads", model),
        _column(r".*/mlp/(gate|up)/kernel", c.intermediate_dim, "MLP columns", model),
        _row(r".*/mlp/down/kernel", c.intermediate_dim, "MLP rows", model),
    ]


def griffin_rules(config: GriffinConfig, model: int) -> List[Rule]:
    """RecurrentGemma (``GriffinBackbone``): recurrent blocks, MQA local attention, GeGLU with biases."""
    c, blocks = config, config.num_heads    # the RG-LRU gates have num_heads diagonal blocks
    rules = [
        _embedding(c.vocab_size, c.width, model),
        _column(r".*/recurrent_block/linear_(x|y)/kernel", blocks, "RG-LRU blocks", model),
        _column(r".*/recurrent_block/linear_(x|y)/bias", blocks, "RG-LRU blocks", model, rank=1),
        _row(r".*/recurrent_block/linear_out/kernel", blocks, "RG-LRU blocks", model),
        _column(r".*/recurrent_block/conv_1d/w", blocks, "RG-LRU blocks", model),       # (width 4, lru)
        _column(r".*/recurrent_block/conv_1d/b", blocks, "RG-LRU blocks", model, rank=1),
        _column(r".*/rg_lru/a_param", blocks, "RG-LRU blocks", model, rank=1),
        _row(r".*/rg_lru/(input_gate|a_gate)/w", blocks, "RG-LRU blocks", model, rank=3),  # (blocks, i, i)
        _row(r".*/rg_lru/(input_gate|a_gate)/b", blocks, "RG-LRU blocks", model),         # (blocks, i)
        _column(r".*/mlp_block/(gate|up)/kernel", c.mlp_expanded_width, "MLP columns", model),
        _column(r".*/mlp_block/(gate|up)/bias", c.mlp_expanded_width, "MLP columns", model, rank=1),
        _row(r".*/mlp_block/down/kernel", c.mlp_expanded_width, "MLP rows", model),
    ]
    if ATTENTION in c.block_types:
        rules += [
            _column(r".*/attention_block/proj_q/kernel", c.num_heads, "query heads", model),
            _column(r".*/attention_block/proj_(k|v)/kernel", 1, "key/value head", model),   # MQA: always 1
            _row(r".*/attention_block/proj_final/kernel", c.num_heads, "query heads", model),
        ]
    return rules


def _blocks(layers) -> str:
    """A regex for these blocks' paths: ``block_(0|1|2)``."""
    return f"block_({'|'.join(str(i) for i in layers)})"


def gemma4_rules(config: Gemma4Config, model: int) -> List[Rule]:
    """Gemma 4 (``Gemma4Backbone``): Gemma 3's rules per group of layers, plus experts and the PLE table."""
    c = config
    rules = [
        _embedding(c.vocab_size, c.hidden_dim, model),
        # Whole heads whatever their size (global layers: global_head_dim), so one rule for every layer.
        _column(r".*/attention/query/kernel", c.num_query_heads, "query heads", model),
        _row(r".*/attention/attention_output/kernel", c.num_query_heads, "query heads", model),
    ]
    # Keys/values: each layer type has its own KV head count (26B-A4B: 8 local, 2 global); a layer
    # that borrows its keys and values ("reuse") has no kernels, so no rule.
    for kind in dict.fromkeys(c.layer_types):
        layers = [i for i in range(c.num_layers) if c.layer_types[i] == kind and c.kv_sharing(i) != "reuse"]
        if layers:
            rules.append(_column(rf".*/{_blocks(layers)}/attention/(key|value)/kernel", c.kv_heads_of(layers[0]),
                                 f"key/value heads ({kind} layers)", model))
    # The MLP: E2B's KV-borrowing layers are twice as wide, so one rule per width.
    widths = sorted({c.mlp_dim_of(i) for i in range(c.num_layers)})
    for width in widths:
        layers = [i for i in range(c.num_layers) if c.mlp_dim_of(i) == width]
        blocks = ".*" if len(widths) == 1 else f".*/{_blocks(layers)}"
        rules += [_column(rf"{blocks}/mlp/(gate|up)/kernel", width, "MLP columns", model),
                  _row(rf"{blocks}/mlp/down/kernel", width, "MLP rows", model)]
    if c.num_experts:
        if splits(c.num_experts, model):               # expert parallelism: whole experts per device
            why = f"{c.num_experts} experts / {model} devices (expert parallelism)"
            rules += [Rule(r".*/experts/(gate|up|down)", (MODEL, None, None), why),
                      # LoRA on the experts: A (experts, in, rank), B (experts, rank, out) go with their expert
                      Rule(r".*/experts/(gate|up|down)_lora_kernel_(a|b)", (MODEL, None, None), why)]
        else:                                          # else split inside each expert, as the dense MLP
            width = c.expert_intermediate_dim
            rules += [_split_axis(r".*/experts/(gate|up)", width, "expert columns", model, rank=3, axis=2),
                      _split_axis(r".*/experts/down", width, "expert rows", model, rank=3, axis=1)]
    if c.per_layer_input_dim:
        # The PLE table (E2B: 262,144 x 35 * 256, 2.3B values, half the checkpoint) is split on its
        # packed (layers * dim) axis, not on the vocabulary: each device looks up its own columns of a
        # token's row with no communication, and the result is split like the context projection's
        # output (same rule), so their sum is local too; block i then fetches its (batch, seq, dim)
        # slice. Splitting vocabulary rows would need an all-reduce of the whole (batch, seq, layers *
        # dim) lookup. Serving systems keep this table in host memory (a token reads one 18 KB row);
        # keras.distribution places variables on devices only, so splitting it is the closest we get.
        packed = c.num_layers * c.per_layer_input_dim
        rules += [_column(r".*/per_layer_embedding/token_table/embeddings", packed, "PLE columns", model),
                  _column(r".*/per_layer_embedding/context_projection/kernel", packed, "PLE columns", model)]
    return rules


# Each family's weights by their paths in its backbone: one entry per family.
RULES = {GemmaConfig: gemma_rules, Gemma4Config: gemma4_rules, GriffinConfig: griffin_rules}


def layout_rules(config, model: int) -> List[Rule]:
    """The rules for ``config`` with ``model`` devices on the model axis (pure Python, no devices)."""
    rules = for_family(RULES, config, "layout rules")(config, model)
    if model > 1 and not any(MODEL in rule.axes for rule in rules):
        raise ValueError(f"a model axis of {model} devices can split nothing in {config.name}: no head count, "
                         f"MLP width or vocabulary size divides by {model}; use a smaller model axis "
                         f"(e.g. mesh {model}x1, pure data parallelism)")
    return rules


def axes_for(rules: List[Rule], path: str, rank: int) -> Tuple[Optional[str], ...]:
    """The layout of the variable at ``path``: the one matching rule's axes, else replicated.

    The same lookup as ``keras.distribution.LayoutMap``: a full regex match, and two
    matching rules are an error.
    """
    matches = [rule for rule in rules if re.fullmatch(rule.pattern, path)]
    if len(matches) > 1:
        raise ValueError(f"{path} matches several layout rules: {[m.pattern for m in matches]}")
    if not matches:
        return (None,) * rank
    if len(matches[0].axes) != rank:
        raise ValueError(f"{path}: rule {matches[0].pattern!r} has {len(matches[0].axes)} axes, the variable {rank}")
    return matches[0].axes


def layout_map(config, mesh):
    """A ``keras.distribution.LayoutMap`` for ``config`` on ``mesh`` (a ``DeviceMesh``, or ``"2x4"``).

    With a string or tuple the mesh is built from all visible devices (``device_mesh``).
    """
    import keras

    from .mesh import device_mesh
    if not isinstance(mesh, keras.distribution.DeviceMesh):
        mesh = device_mesh(mesh)
    _, model = parse_mesh(tuple(int(n) for n in mesh.shape))
    layouts = keras.distribution.LayoutMap(mesh)
    for rule in layout_rules(config, model):
        layouts[rule.pattern] = rule.axes
    return layouts
