"""LoRA: train two thin matrices next to a frozen weight (Hu et al., 2021).

A frozen Dense kernel ``W`` (in, out) gets a low-rank update::

    y = x @ W + (alpha / rank) * (x @ A) @ B       # A: (in, rank), B: (rank, out)

``B`` starts at zero, so the tuned model starts exactly where the base model is,
and only ``rank * (in + out)`` numbers per layer learn. We do not write that
layer: Keras' ``Dense.enable_lora(rank, lora_alpha)`` adds ``lora_kernel_a`` and
``lora_kernel_b`` and freezes the kernel. This file only chooses *which* Dense
layers get it (by name), freezes everything else (norms, embedding, biases),
counts parameters, and undoes it (``merge_lora`` folds ``A @ B`` into ``W``,
``remove_lora`` drops it).

Target names are the layers' own names:

===============  =======================================  ==================================
group            Gemma 1-4 (models/gemma/, gemma4/)       RecurrentGemma (models/griffin/)
===============  =======================================  ==================================
attention        query, key, value, attention_output      proj_q, proj_k, proj_v, proj_final
mlp              gate, up, down                           gate, up, down
recurrent        (none)                                   linear_x, linear_y, linear_out
per_layer_input  per_layer_gate, per_layer_projection     (none)
experts          experts                                  (none)
===============  =======================================  ==================================

A group name selects all its layers; "query", "key", "value" and
"attention_output" also select Griffin's proj_q, proj_k, proj_v, proj_final, so
the default ``("query", "value")`` means the same thing on both families.

Gemma 4 adds three kinds of target. A layer that borrows its keys and values
(KV sharing) has only ``query`` and ``attention_output``: "key"/"value" adapt the
layer that lends them. ``per_layer_gate``/``per_layer_projection`` are the Dense
layers of the per-layer input (E2B, E4B). ``experts`` (26B-A4B) is not a Dense
layer: the routed experts are three stacked 3-D weights in ``MixtureOfExperts``,
whose own ``enable_lora`` (``models/gemma4/moe.py``) gives every expert its own
``A_e @ B_e`` on ``gate``, ``up`` and ``down``; "mlp" on Gemma 4 is the dense MLP
beside them. The router is not a target.

The base may be int8-quantized first (``backbone.quantize("int8")``): that is
QLoRA's idea (Dettmers et al., 2023) with Keras' int8 instead of NF4.
"""

from __future__ import annotations

import math
import numbers
import weakref

import keras

from ..models.gemma4.moe import EXPERT_WEIGHTS, MixtureOfExperts

GROUPS = {
    "attention": ("query", "key", "value", "attention_output", "proj_q", "proj_k", "proj_v", "proj_final"),
    "mlp": ("gate", "up", "down"),
    "recurrent": ("linear_x", "linear_y", "linear_out"),
    "per_layer_input": ("per_layer_gate", "per_layer_projection"),
    "experts": ("experts",),
}
GRIFFIN_ALIASES = {"query": "proj_q", "key": "proj_k", "value": "proj_v", "attention_output": "proj_final"}
KNOWN = set(GROUPS) | {name for names in GROUPS.values() for name in names}
INT8_SCALES = ("/kernel_scale", "/embeddings_scale")   # Keras' int8 scales: not parameters of the model
# {backbone: the variables enable_lora froze}, so that merge/remove unfreeze those and only those
# (a weight the model keeps frozen on purpose, such as Gemma 4's layer_scalar, stays frozen).
_FROZEN_BY_LORA = weakref.WeakKeyDictionary()


def backbone_of(model):
    """The keras.Model inside a GemmaModel, or ``model`` itself when it is a backbone."""
    backbone = getattr(model, "backbone", model)
    if not isinstance(backbone, keras.Model):
        raise TypeError(f"Expected a gemma_kit model or backbone, got {type(model).__name__}")
    return backbone


def sublayers(backbone):
    """Every layer inside ``backbone``, at any depth. Keras has no public call for this (``model.layers``
    lists only the direct children), so we use the private walk Keras itself uses for ``model.summary``."""
    return backbone._flatten_layers(include_self=False)


def _adaptable_layers(backbone):
    """The layers LoRA can adapt: every Dense layer, and Gemma 4's experts (``MixtureOfExperts``)."""
    return [layer for layer in sublayers(backbone) if isinstance(layer, (keras.layers.Dense, MixtureOfExperts))]


def _lora_attributes(layer) -> list:
    if isinstance(layer, MixtureOfExperts):                 # moe.py: gate_lora_kernel_a, ..., down_lora_kernel_b
        return [f"{name}_lora_kernel_{side}" for name in EXPERT_WEIGHTS for side in "ab"]
    return ["lora_kernel_a", "lora_kernel_b"]                # Keras' Dense


def lora_variables(layer) -> list:
    """The LoRA matrices of one adapted layer: ``[A, B]`` for a Dense layer, ``[A, B]`` per expert weight."""
    return [getattr(layer, name) for name in _lora_attributes(layer)]


def resolve_targets(targets) -> set:
    """Target names and group names -> the set of Dense layer names they select."""
    if isinstance(targets, str):
        targets = (targets,)
    names = set()
    for target in targets:
        if target not in KNOWN:
            raise ValueError(f"Unknown LoRA target {target!r}; choose among layer names "
                             f"{sorted(KNOWN - set(GROUPS))} or groups {sorted(GROUPS)}")
        names.update(GROUPS.get(target, (target,)))
        if target in GRIFFIN_ALIASES:
            names.add(GRIFFIN_ALIASES[target])
    return names


def lora_layers(model) -> list:
    """The layers of ``model`` (Dense, or Gemma 4's experts) that have LoRA enabled, in model order."""
    return [layer for layer in _adaptable_layers(backbone_of(model)) if layer.lora_enabled]


def lora_state(model):
    """``None`` without LoRA, else ``{"rank", "alpha", "targets"}`` (targets: sorted layer names)."""
    layers = lora_layers(model)
    if not layers:
        return None
    return {"rank": int(layers[0].lora_rank), "alpha": float(layers[0].lora_alpha),
            "targets": sorted({layer.name for layer in layers})}


def parameter_counts(model) -> dict:
    """{"trainable", "total", "fraction"}: numbers of parameters (quantized int8 weights count one each)."""
    backbone = backbone_of(model)
    trainable = sum(_size(v) for v in backbone.trainable_weights)
    total = sum(_size(v) for v in backbone.weights if not v.path.endswith(INT8_SCALES))
    return {"trainable": trainable, "total": total, "fraction": trainable / max(total, 1)}


def _size(variable) -> int:
    return math.prod(int(dim) for dim in variable.shape)


def enable_lora(model, rank: int = 4, targets=("query", "value"), alpha: float | None = None,
                verbose: bool = True) -> dict:
    """Add LoRA of ``rank`` to the Dense layers named in ``targets``; freeze every other weight.

    ``model``: a GemmaModel (from ``gemma_kit.load``) or a backbone. ``alpha``: the
    update is scaled by ``alpha / rank`` (Keras' default ``alpha = rank``, scale 1).
    Returns (and prints, unless ``verbose=False``) the trainable and total parameter counts.
    """
    if not isinstance(rank, numbers.Integral) or rank <= 0:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    backbone = backbone_of(model)
    existing = lora_state(backbone)
    if existing:
        raise ValueError(f"LoRA is already enabled (rank {existing['rank']} on {', '.join(existing['targets'])}); "
                         "call merge_lora(model) or remove_lora(model) first")
    names = resolve_targets(targets)
    chosen = [layer for layer in _adaptable_layers(backbone) if layer.name in names]
    if not chosen:
        available = sorted({layer.name for layer in _adaptable_layers(backbone)})
        raise ValueError(f"LoRA targets {sorted(targets) if not isinstance(targets, str) else targets!r} "
                         f"match no Dense layer (nor experts) of {backbone.name}; its layers are {available}")
    frozen = [variable for variable in backbone.weights if variable.trainable]
    for variable in frozen:                       # freeze the base: embedding, norms, kernels, biases
        variable.trainable = False
    _FROZEN_BY_LORA[backbone] = frozen
    for layer in chosen:
        layer.enable_lora(rank, lora_alpha=alpha)  # Keras (Dense) or moe.py (experts): adds A and B, B = 0
    _refresh_compiled(model)
    counts = parameter_counts(backbone)
    if verbose:
        print(f"LoRA rank {rank} on {len(chosen)} layers ({', '.join(sorted({layer.name for layer in chosen}))}): "
              f"{counts['trainable']:,} trainable of {counts['total']:,} parameters "
              f"({100 * counts['fraction']:.3f}%)")
    return counts


def _drop_lora(layer):
    """Undo ``enable_lora``: untrack the LoRA matrices (Keras has no public call for this).

    ``del layer.lora_kernel_a`` would do it too, but Keras' ``Layer.__delattr__`` then runs a full
    ``gc.collect()``, about a second per layer in a big Python heap.
    """
    for name in _lora_attributes(layer):
        layer._untrack_variable(getattr(layer, name))
        object.__delattr__(layer, name)
    layer.lora_enabled, layer.lora_rank = False, None


def _unfreeze(backbone):
    """Make trainable again what ``enable_lora`` froze (without its record: every float weight)."""
    frozen = _FROZEN_BY_LORA.pop(backbone, None)
    for variable in frozen if frozen is not None else backbone.weights:
        if "float" in str(variable.dtype):    # int8 quantized kernels stay frozen
            variable.trainable = True


def merge_lora(model) -> int:
    """Fold ``(alpha / rank) * A @ B`` into each kernel and drop the LoRA matrices; returns the layer count.

    An int8 kernel is dequantized, merged and quantized again (Keras' own
    ``_get_kernel_with_merged_lora``, the code ``model.save`` uses). The model
    then computes what the tuned model computed, at the base model's cost.
    Gemma 4's experts: each of ``gate``/``up``/``down`` becomes ``W_e + (alpha / rank) A_e @ B_e``.
    """
    backbone = backbone_of(model)
    layers = lora_layers(backbone)
    for layer in layers:
        if isinstance(layer, MixtureOfExperts):
            for name in EXPERT_WEIGHTS:
                getattr(layer, name).assign(layer.expert_weight(name))     # (experts, in, out)
        else:
            kernel, scale, _ = layer._get_kernel_with_merged_lora()
            layer._kernel.assign(kernel)
            if scale is not None:
                layer.kernel_scale.assign(scale)
        _drop_lora(layer)
    _unfreeze(backbone)
    _refresh_compiled(model)
    return len(layers)


def remove_lora(model) -> int:
    """Drop the LoRA matrices without merging them: back to the base model. Returns the layer count.

    A FIM adapter's markers (``fim.enable_fim``) go too: the base model was never taught them.
    """
    backbone = backbone_of(model)
    layers = lora_layers(backbone)
    for layer in layers:
        _drop_lora(layer)
    if getattr(model, "fim_markers", None) is not None:
        del model.fim_markers
        if hasattr(model, "fim_order"):
            del model.fim_order
    _unfreeze(backbone)
    _refresh_compiled(model)
    return len(layers)


def _refresh_compiled(model):
    """A GemmaModel's compiled functions were built for the weights it had: rebuild them (a bare backbone has none)."""
    from ..model import GemmaModel
    if isinstance(model, GemmaModel):
        model.recompile()
