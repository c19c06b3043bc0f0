"""Will it fit? The memory a Gemma model needs to generate text or to be fine-tuned.

    plan = gemma_kit.memory_plan("gemma_2b_en", dtype="bfloat16", optimizer=None)
    plan.weights_bytes / 1e9      # 5.01
    plan.fits                     # {"Colab T4": True, "Kaggle 2xT4": True, "Kaggle TPU v3-8": True}
    plan                          # a table (plain text, or HTML in a notebook)

Each term counts the tensors alive at the peak of one step, in bytes (1 GB = 10**9 bytes).
P parameters, P_t of them trainable, b bytes per value of ``dtype``, T = batch * seq tokens:

| term             | bytes                                                    | counted for     |
|------------------|----------------------------------------------------------|-----------------|
| weights          | (P + LoRA adapters) * b                                  | always          |
| gradients        | P_t * b                                                  | training        |
| optimizer state  | slots * P_t * 4 (float32; AdamW: m and v, SGD: none)     | training        |
| activations      | what backpropagation keeps, see ``activation_bytes``     | training        |
| optimizer step   | temporaries of the update: copies * P_t * 4              | training        |
| KV cache         | 2 * batch * kv_heads * head_dim * b * slots, summed over | generation      |
|                  | layers: seq slots (global), min(window, seq) (local)     |                 |

Training needs weights + gradients + optimizer state + max(activations, optimizer step):
the activations are freed by the time the optimizer updates the weights.
Generation needs weights + KV cache. LoRA (Hu et al., 2021) freezes the weights and
trains two small matrices per adapted kernel, r * (in + out) parameters.

Activations follow Korthikanti et al. (2022), "Reducing Activation Recomputation in
Large Transformer Models": without rematerialisation (what ``model.fit`` does) each
layer keeps its residual-stream tensors, the q/k/v heads, the (batch, heads, seq, seq)
float32 attention scores and the GeGLU branches; the head keeps float32 logits
(batch, seq, vocab), the biggest single term. Two numbers depend on the Keras backend;
we measured them on the CPU with AdamW (``tests/test_memory.py``, within 25%):

| backend    | logits-sized float32 tensors the loss keeps | weight-sized temporaries of the update   |
|------------|---------------------------------------------|------------------------------------------|
| jax        | 4 (Keras builds a one-hot target here)      | 0 (XLA updates the buffers in place)     |
| tensorflow | 2 (a fused softmax cross-entropy op)        | 2 (measured)                             |
| torch      | 4                                           | 3 (``torch._foreach_*`` ops return new   |
|            |                                             | tensors: m * lr, sqrt(v) + eps, ratio)   |
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional

from .models.gemma.config import LOCAL, GemmaConfig

GB = 10 ** 9

# name -> (bytes per weight, bytes per activation); "mixed_*" keeps float32 weights.
DTYPES = {"float32": (4, 4), "bfloat16": (2, 2), "float16": (2, 2),
          "mixed_bfloat16": (4, 2), "mixed_float16": (4, 2)}

# Optimizer -> float32 slots per trainable parameter. None: generation only, no training.
OPTIMIZERS = {"adamw": 2, "adam": 2, "lion": 1, "sgd": 0, None: 0}

# Backend -> (float32 logits-sized tensors the loss keeps, weight-sized temporaries of the update).
BACKENDS = {"jax": (4, 0), "tensorflow": (2, 2), "torch": (4, 3)}

# Where a tutorial runs, as (devices, GB each): the model is sharded over the devices
# (``keras.distribution.ModelParallel``, as the Keras Gemma tutorials do on two T4s and a TPU).
DEVICES = {"Colab T4": (1, 15), "Kaggle 2xT4": (2, 15), "Kaggle TPU v3-8": (8, 16)}


def lora_parameters(config: GemmaConfig, rank: int, targets=("query", "value")) -> int:
    """r * (in + out) per adapted kernel: A is (in, r), B is (r, out), as in the LoRA paper and PEFT.

    keras-hub's ``enable_lora`` adapts its (heads, hidden, head_dim) kernels with an A of shape
    (heads, hidden, r), so it trains more: 1,363,968 parameters for gemma_2b_en at rank 4, where
    r * (in + out) on query and value gives 460,800. Both are < 0.06% of the model.
    """
    d, heads, kv, hd = config.hidden_dim, config.num_query_heads, config.num_kv_heads, config.head_dim
    shapes = {"query": (d, heads * hd), "key": (d, kv * hd), "value": (d, kv * hd),
              "attention_output": (heads * hd, d)}
    unknown = sorted(set(targets) - set(shapes))
    if unknown:
        raise ValueError(f"lora_targets: unknown kernels {unknown}; choose from {sorted(shapes)}")
    return config.num_layers * sum(rank * sum(shapes[t]) for t in targets)


def activation_bytes(config: GemmaConfig, batch_size: int, sequence_length: int, compute_bytes: int,
                     logits_copies: int = 4) -> int:
    """Bytes kept for the backward pass of one training step (no rematerialisation).

    Per layer, counted in tensors of T = batch * seq tokens: 6 + 2 per RMSNorm of width
    hidden_dim (residual stream, each norm's input and output), the q, k, v heads twice
    (projected; normed and rotated) and the mixed heads once, 5 of width intermediate_dim
    (gate, up, gelu, product, and one gradient in flight), and 4 float32 (batch, heads, seq, seq)
    score tensors (scores, masked, probabilities, their gradient; 5 with a soft cap).
    """
    c, s = config, sequence_length
    tokens = batch_size * s
    norms = 4 if c.use_post_norms else 2
    per_layer = tokens * compute_bytes * (
        (6 + 2 * norms) * c.hidden_dim                                       # residual stream, norm in/out
        + (2 * (c.num_query_heads + 2 * c.num_kv_heads) + c.num_query_heads) * c.head_dim  # q,k,v; mixed
        + 5 * c.intermediate_dim)                                            # gate, up, gelu, product, grad
    scores = (4 + (c.attn_soft_cap is not None)) * batch_size * c.num_query_heads * s * s * 4  # float32
    logits = logits_copies * tokens * c.vocab_size * 4                      # float32 (batch, seq, vocab)
    return c.num_layers * (per_layer + scores) + logits


def kv_cache_bytes(config: GemmaConfig, batch_size: int, sequence_length: int, compute_bytes: int) -> int:
    """Keys and values of every layer: a slot per step (global), a ring buffer of the window (local)."""
    slots = sum(min(config.sliding_window, sequence_length) if t == LOCAL else sequence_length
                for t in config.layer_types)
    return 2 * batch_size * config.num_kv_heads * config.head_dim * compute_bytes * slots


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    name: str
    dtype: str
    backend: str
    optimizer: Optional[str]
    lora_rank: Optional[int]
    batch_size: int
    sequence_length: int
    parameters: int
    trainable_parameters: int
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    optimizer_step_bytes: int
    kv_cache_bytes: int
    budget_gb: Optional[float] = None

    @property
    def training(self) -> bool:
        return self.optimizer is not None

    @property
    def total_bytes(self) -> int:
        if not self.training:
            return self.weights_bytes + self.kv_cache_bytes
        return (self.weights_bytes + self.gradients_bytes + self.optimizer_bytes
                + max(self.activations_bytes, self.optimizer_step_bytes))

    @property
    def fits(self) -> Dict[str, bool]:
        out = {name: self.total_bytes <= n * gb * GB for name, (n, gb) in DEVICES.items()}
        if self.budget_gb is not None:
            out["budget"] = self.total_bytes <= self.budget_gb * GB
        return out

    def rows(self):
        """(label, GB) for the table; terms that do not apply to this plan are left out."""
        rows = [("weights", self.weights_bytes)]
        if self.training:
            rows += [("gradients", self.gradients_bytes), ("optimizer state", self.optimizer_bytes),
                     ("activations", self.activations_bytes), ("optimizer step", self.optimizer_step_bytes)]
        else:
            rows += [("KV cache", self.kv_cache_bytes)]
        return [(label, value / GB) for label, value in rows] + [("total", self.total_bytes / GB)]

    def _title(self):
        task = (f"{self.optimizer} fine-tuning" + (f", LoRA rank {self.lora_rank}" if self.lora_rank else "")
                if self.training else "generation")
        return (f"{self.name}: {task}, {self.dtype}, batch {self.batch_size} x {self.sequence_length} tokens, "
                f"{self.backend} ({self.parameters:,} parameters, {self.trainable_parameters:,} trainable)")

    def _fit_label(self, name):
        if name == "budget":
            return f"budget ({self.budget_gb:g} GB)"
        n, gb = DEVICES[name]
        return f"{name} ({n * gb} GB)"

    def __str__(self):
        lines = [self._title()] + [f"  {label:<16} {gb:10.2f} GB" for label, gb in self.rows()]
        lines += [f"  fits {self._fit_label(k):<24} {'yes' if ok else 'no'}" for k, ok in self.fits.items()]
        return "\n".join(lines)

    def _repr_html_(self):
        cells = "".join(f"<tr><td>{label}</td><td style='text-align:right'>{gb:,.2f} GB</td></tr>"
                        for label, gb in self.rows())
        cells += "".join(f"<tr><td>fits {self._fit_label(k)}</td><td style='text-align:right'>"
                         f"{'yes' if ok else 'no'}</td></tr>" for k, ok in self.fits.items())
        return f"<table><caption>{self._title()}</caption>{cells}</table>"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "total_bytes": self.total_bytes, "fits": self.fits}


def _config_of(name_or_config):
    config = name_or_config
    if not dataclasses.is_dataclass(config):
        from .presets import PRESETS, get_preset
        source = os.fspath(name_or_config)
        if source in PRESETS or not (os.path.exists(source) or "://" in source):
            config = get_preset(source).config        # a ValueError naming close presets
        else:
            from .loaders import read_config
            config = read_config(source)              # a checkpoint path or handle
    if not isinstance(config, GemmaConfig):
        # The activation and cache terms above are a transformer's; Griffin's fixed-size state needs
        # its own (gemma_kit.distributed.device_memory counts any family's weights and optimizer state).
        raise TypeError(f"memory_plan covers the Gemma transformers (GemmaConfig); {config.name} is a "
                        f"{type(config).__name__}: use gemma_kit.distributed.device_memory for its weights "
                        f"and optimizer state, and gemma_kit.nn.cache_bytes(backbone.init_cache(...)) for its cache")
    return config


def memory_plan(name_or_config, dtype: str = "float32", batch_size: int = 1, sequence_length: int = 1024,
                lora_rank: Optional[int] = None, optimizer: Optional[str] = "adamw",
                budget_gb: Optional[float] = None, lora_targets=("query", "value"),
                backend: Optional[str] = None) -> MemoryPlan:
    """Bytes for weights, training state, activations and KV cache; ``optimizer=None`` plans generation.

    ``name_or_config``: a preset name (``"gemma_2b_en"``), a checkpoint path or a ``GemmaConfig``.
    ``backend``: the Keras backend whose measured constants to use (default: the current one).
    """
    config = _config_of(name_or_config)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    key = optimizer.lower() if isinstance(optimizer, str) else optimizer
    key = None if key == "none" else key
    if key not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not supported; choose one of "
                         f"{', '.join(str(o) for o in OPTIMIZERS)} (None plans generation only)")
    if backend is None:
        import keras
        backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not supported; choose one of {', '.join(BACKENDS)}")
    for field, value in (("batch_size", batch_size), ("sequence_length", sequence_length)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{field} must be a positive integer, got {value!r}")
    if sequence_length > config.max_sequence_length:
        raise ValueError(f"sequence_length={sequence_length} is longer than {config.name}'s "
                         f"max_sequence_length={config.max_sequence_length}")
    if lora_rank is not None and (not isinstance(lora_rank, int) or lora_rank <= 0):
        raise ValueError(f"lora_rank must be a positive integer or None, got {lora_rank!r}")

    weight_bytes, compute_bytes = DTYPES[dtype]
    logits_copies, step_copies = BACKENDS[backend]
    parameters = config.num_parameters()
    adapters = lora_parameters(config, lora_rank, lora_targets) if lora_rank else 0
    trainable = 0 if key is None else (adapters if lora_rank else parameters)
    training = key is not None
    return MemoryPlan(
        name=config.name, dtype=dtype, backend=backend, optimizer=key, lora_rank=lora_rank,
        batch_size=batch_size, sequence_length=sequence_length, parameters=parameters,
        trainable_parameters=trainable,
        weights_bytes=(parameters + adapters) * weight_bytes,
        gradients_bytes=trainable * weight_bytes,
        optimizer_bytes=OPTIMIZERS[key] * trainable * 4,
        activations_bytes=activation_bytes(config, batch_size, sequence_length, compute_bytes,
                                           logits_copies) if training else 0,
        optimizer_step_bytes=step_copies * trainable * 4 if OPTIMIZERS[key] else 0,   # stateless SGD: none
        kv_cache_bytes=kv_cache_bytes(config, batch_size, sequence_length, compute_bytes),
        budget_gb=budget_gb)
