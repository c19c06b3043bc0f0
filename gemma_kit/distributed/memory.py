"""Bytes per device: what each device of a mesh holds, computed from the layouts without allocating.

    table = device_memory("gemma_7b_en", mesh="1x8", dtype="bfloat16", lora_rank=4)
    print(table)              # weights, LoRA adapters, optimizer state per device; fits a 16 GB TPU core?

A variable split over the model axis (size m) puts ``size / m`` of its values on each
device; a replicated one puts all of them on every device. Every rule in
``layouts.py`` splits evenly, so every device holds the same number of bytes:

    bytes per device = sum over variables of  prod(shape) * itemsize / m^(variable is split)

The shapes come from building the real model class inside a ``keras.StatelessScope``
that does not initialise variables: Keras records each variable's path, shape and
dtype and defers its values, so a 9B model costs nothing. Optimizer state is
``slots`` float copies of each trainable variable, with the same layout (AdamW: 2).
Activations and the KV cache are not counted here (see ``gemma_kit.memory``).
Gemma 4's rows add its experts and its per-layer embedding (PLE) table, which the
layout splits like any weight though it could live in host memory.

``measured_bytes_per_device`` reads the same numbers from real arrays on a mesh
(``tests/test_distributed.py`` checks that the two agree).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

from ..memory import DEVICES, GB, OPTIMIZERS
from .layouts import axes_for, layout_rules
from .mesh import MODEL, mesh_name, parse_mesh


@dataclasses.dataclass(frozen=True)
class VariableSpec:
    path: str
    shape: Tuple[int, ...]
    dtype: str
    trainable: bool


def _config_of(config_or_name):
    if isinstance(config_or_name, str):
        from ..loaders import read_config
        return read_config(config_or_name)
    return config_or_name


def variable_specs(config_or_name, dtype: Optional[str] = None, lora_rank: Optional[int] = None,
                   lora_targets=("query", "value")) -> List[VariableSpec]:
    """Path, shape, dtype and trainability of every variable, with no weight allocated."""
    import keras
    from keras.src.backend.common import global_state   # Keras' list of variables awaiting initialisation

    from ..models import backbone_class
    from ..tuning import enable_lora
    config = _config_of(config_or_name)
    with keras.StatelessScope(initialize_variables=False):       # shapes only: values are deferred
        backbone = backbone_class(config)(config, dtype=dtype)
        if lora_rank:
            enable_lora(backbone, rank=lora_rank, targets=lora_targets, verbose=False)
    specs = [VariableSpec(v.path, tuple(int(n) for n in v.shape), v.dtype, v.trainable) for v in backbone.weights]
    # Keras would initialise the deferred variables at the next top-level StatelessScope exit
    # (allocating the full model): forget them instead.
    ours = {id(v) for v in backbone.weights}
    pending = global_state.get_global_attribute("uninitialized_variables") or []
    pending[:] = [v for v in pending if id(v) not in ours]
    return specs


def _itemsize(dtype: str) -> int:
    import numpy as np
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


PLE_TABLE = "PLE table"   # Gemma 4 E2B/E4B: could live in host memory (gemma_kit.memory_plan says more)


def _group(path: str) -> str:
    """A table row for a variable path ("<model>/block_3/attention/query/kernel")."""
    layer = path.split("/")[-2]
    if "lora_kernel" in path:
        return "LoRA adapters"
    if "norm" in layer:                        # also Gemma 4's post_ffw_norm_dense, pre_ffw_norm_experts
        return "norms"
    for key, label in (("token_embedding", "embedding"), ("token_table", PLE_TABLE), ("attention", "attention"),
                       ("mlp", "MLP"), ("experts", "experts (+ router)"), ("per_layer", "per-layer inputs"),
                       ("layer_scalar", "layer scalars"),
                       ("recurrent_block", "recurrent (RG-LRU)")):
        if key in path:
            return label
    return "other"


@dataclasses.dataclass(frozen=True)
class DeviceMemory:
    name: str
    mesh: Tuple[int, int]
    dtype: str
    optimizer: Optional[str]
    lora_rank: Optional[int]
    rows: Dict[str, Tuple[int, int]]       # group -> (bytes in the whole model, bytes per device)
    optimizer_bytes: Tuple[int, int]       # (whole, per device)

    @property
    def weights_per_device(self) -> int:
        return sum(per_device for _, per_device in self.rows.values())

    @property
    def total_per_device(self) -> int:
        return self.weights_per_device + self.optimizer_bytes[1]

    def fits(self, gb_per_device: float) -> bool:
        return self.total_per_device <= gb_per_device * GB

    def __str__(self):
        task = "generation" if not self.optimizer else (
            f"{self.optimizer} " + (f"LoRA rank {self.lora_rank}" if self.lora_rank else "full fine-tuning"))
        lines = [f"{self.name} on mesh {mesh_name(self.mesh)} ({self.mesh[0] * self.mesh[1]} devices), "
                 f"{self.dtype}, {task}",
                 f"  {'':<22}{'whole model':>14}{'per device':>14}"]
        rows = list(self.rows.items())
        if self.optimizer:
            rows.append(("optimizer state", self.optimizer_bytes))
        rows.append(("total", (sum(w for w, _ in self.rows.values()) + self.optimizer_bytes[0],
                               self.total_per_device)))
        lines += [f"  {label:<22}{whole / GB:>11.3f} GB{each / GB:>11.3f} GB" for label, (whole, each) in rows]
        if PLE_TABLE in self.rows:
            lines.append(f"  (the {PLE_TABLE} is read one row per token: kept in host memory instead, it would "
                         f"free {self.rows[PLE_TABLE][1] / GB:.3f} GB per device)")
        return "\n".join(lines)


def device_memory(config_or_name, mesh="1x8", dtype: str = "float32", optimizer: Optional[str] = None,
                  lora_rank: Optional[int] = None, lora_targets=("query", "value")) -> DeviceMemory:
    """Bytes per device of weights (+ LoRA adapters, + optimizer state) for a model on ``mesh``.

    ``optimizer=None`` counts what generation holds; ``"adamw"`` adds 2 slots per trainable value.
    """
    config = _config_of(config_or_name)
    data, model = parse_mesh(mesh)
    key = optimizer.lower() if isinstance(optimizer, str) else optimizer
    if key not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r}: choose one of {', '.join(str(o) for o in OPTIMIZERS)}")
    rules = layout_rules(config, model)
    rows: Dict[str, Tuple[int, int]] = {}
    optimizer_whole = optimizer_each = 0
    for spec in variable_specs(config, dtype=dtype, lora_rank=lora_rank, lora_targets=lora_targets):
        whole = math.prod(spec.shape) * _itemsize(spec.dtype)
        split = model if MODEL in axes_for(rules, spec.path, len(spec.shape)) else 1
        each = whole // split                                  # every rule splits evenly
        old = rows.get(_group(spec.path), (0, 0))
        rows[_group(spec.path)] = (old[0] + whole, old[1] + each)
        if key and spec.trainable:                             # slots share the weight's dtype and layout
            optimizer_whole += OPTIMIZERS[key] * whole
            optimizer_each += OPTIMIZERS[key] * each
    return DeviceMemory(config.name, (data, model), dtype, key, lora_rank, rows, (optimizer_whole, optimizer_each))


def measured_bytes_per_device(variables) -> Dict[str, int]:
    """{device: bytes} summed over the addressable shards of real (JAX) arrays."""
    out: Dict[str, int] = {}
    for variable in variables:
        for shard in variable.value.addressable_shards:
            out[str(shard.device)] = out.get(str(shard.device), 0) + shard.data.nbytes
    return out


def memory_tables(cases=(("gemma_7b_en", "Kaggle TPU v3-8"), ("gemma2_9b_en", "Kaggle 2xT4")),
                  dtype="bfloat16", optimizer="adamw", lora_rank=4) -> str:
    """The lesson's tables: each preset on a ``1xN`` mesh spanning a whole accelerator set."""
    out = []
    for name, where in cases:
        devices, gb = DEVICES[where]
        table = device_memory(name, (1, devices), dtype=dtype, optimizer=optimizer, lora_rank=lora_rank)
        out.append(f"{table}\n  fits {where} ({devices} x {gb} GB): {'yes' if table.fits(gb) else 'no'}")
    return "\n\n".join(out)
