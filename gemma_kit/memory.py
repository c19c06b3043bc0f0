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

Gemma 4 changes three terms (``Gemma4Config``'s per-layer helpers give the numbers):

- the *per-layer embedding (PLE) table* of E2B/E4B is its own row, ``ple_bytes``, apart
  from the accelerator-resident ``weights``: a token reads one row of it, so it can live
  in host memory (the plan reports the accelerator total both ways);
- *experts* (26B-A4B): all are stored (in ``weights``), only ``num_experts_per_token``
  compute a token: ``active_parameters`` sets the FLOPs and weight bytes read per token;
- the *KV cache* sums each layer's own KV heads and head size (global layers: 512);
  layers that borrow keys and values (``kv_sharing(i) == "reuse"``) keep none.

``quantize="int8"`` plans the weight-only int8 of ``nn/int8.py``: each weight is one byte
plus a float32 scale per block of 32 (``INT8_BYTES`` = 1.125 bytes), activations and the
cache stay in ``dtype``. The few float weights it leaves (norms, Griffin's gates) are counted
as int8 too (under 0.1% of a model); Gemma 4's expert tensors stay float and are counted so.
The int8 weights are frozen: such a plan generates, or trains LoRA adapters (QLoRA, float32).

Which dtype on a T4 (``plan.t4_dtype``, a line of the table): ``"float16"``. A Colab or
Kaggle T4 (NVIDIA Turing) has float16 tensor cores and none for bfloat16, so bfloat16 runs
there slowly, if at all; float16 takes bfloat16's two bytes a weight. Gemma's residual stream
passes float16's largest value (65,504), so a float16 gemma_kit model keeps that one tensor
in float32 (``nn/precision.py``): the plan counts it at 4 bytes in the activations, and Gemma 4's
per-layer-input gate and projection, which read it, as float32 weights.

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
from typing import Dict, Optional, Tuple

from .models.gemma.config import LOCAL, GemmaConfig
from .models.gemma4.config import Gemma4Config
from .nn.precision import residual_dtype

GB = 10 ** 9

# name -> (bytes per weight, bytes per activation); "mixed_*" keeps float32 weights.
DTYPES = {"float32": (4, 4), "bfloat16": (2, 2), "float16": (2, 2),
          "mixed_bfloat16": (4, 2), "mixed_float16": (4, 2)}

# Weight-only int8 (``nn/int8.py``): 1 byte per weight + a float32 scale per block of 32 weights.
INT8_BYTES = 1 + 4 / 32
QUANTIZE = (None, "int8")

# The dtype to load with on a T4 (NVIDIA Turing: float16 tensor cores, no bfloat16 ones).
T4_DTYPE = "float16"

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
    unknown = sorted(set(targets) - {"query", "key", "value", "attention_output"})
    if unknown:
        raise ValueError(f"lora_targets: unknown kernels {unknown}; choose from "
                         "['attention_output', 'key', 'query', 'value']")
    d, heads, total = config.hidden_dim, config.num_query_heads, 0
    for i in range(config.num_layers):
        kv, hd, _, has_key, has_value = _layer(config, i)
        shapes = {"query": (d, heads * hd), "attention_output": (heads * hd, d),
                  **({"key": (d, kv * hd)} if has_key else {}), **({"value": (d, kv * hd)} if has_value else {})}
        total += sum(rank * sum(shapes[t]) for t in targets if t in shapes)   # Gemma 4: some layers lack k, v
    return total


def _layer(config: GemmaConfig, i: int):
    """(KV heads, head_dim, MLP width, has a key kernel, has a value kernel) of layer ``i``: the same
    in every layer of Gemma 1-3; Gemma 4's per-layer helpers (global layers, KV sharing, keys = values)."""
    if not isinstance(config, Gemma4Config):
        return config.num_kv_heads, config.head_dim, config.intermediate_dim, True, True
    own = config.kv_sharing(i) != "reuse"
    return (config.kv_heads_of(i), config.head_dim_of(i), config.mlp_dim_of(i), own,
            own and not config.keys_are_values(i))


def activation_bytes(config: GemmaConfig, batch_size: int, sequence_length: int, compute_bytes: int,
                     logits_copies: int = 4, residual_bytes: Optional[int] = None) -> int:
    """Bytes kept for the backward pass of one training step (no rematerialisation).

    Per layer, counted in tensors of T = batch * seq tokens: 6 + 2 per RMSNorm of width
    hidden_dim (residual stream, each norm's input and output), the q, k, v heads twice
    (projected; normed and rotated) and the mixed heads once, 5 of width intermediate_dim
    (gate, up, gelu, product, and one gradient in flight), and 4 float32 (batch, heads, seq, seq)
    score tensors (scores, masked, probabilities, their gradient; 5 with a soft cap).
    Gemma 4 adds, per layer, 5 tensors of (experts x expert width) (all experts run, see
    ``models/gemma4/moe.py``) and 3 more norms, or the per-layer input (3 of its width, 2 of
    hidden_dim); once, the PLE lookup and context (4 of layers x its width).
    ``residual_bytes``: bytes of a residual-stream value, 4 under float16 (``nn/precision.py``).
    """
    c, s = config, sequence_length
    tokens = batch_size * s
    norms = 4 if c.use_post_norms else 2
    g4 = isinstance(c, Gemma4Config)
    extra = ((5 * c.num_experts * c.expert_intermediate_dim + 6 * c.hidden_dim if g4 and c.num_experts else 0)
             + (3 * c.per_layer_input_dim + 2 * c.hidden_dim if g4 and c.per_layer_input_dim else 0))
    per_token = 4 * c.num_layers * c.per_layer_input_dim if g4 else 0       # values kept per token; PLE
    residual = c.num_layers * (6 + 2 * norms) * c.hidden_dim                 # residual stream, norm in/out
    for i in range(c.num_layers):
        kv, hd, mlp, has_key, _ = _layer(c, i)
        per_token += ((2 * (c.num_query_heads + 2 * kv * has_key) + c.num_query_heads) * hd  # q,k,v; mixed
                      + 5 * mlp + extra)                                     # gate, up, gelu, product, grad
    scores = (4 + (c.attn_soft_cap is not None)) * batch_size * c.num_query_heads * s * s * 4  # float32
    logits = logits_copies * tokens * c.vocab_size * 4                      # float32 (batch, seq, vocab)
    residual_bytes = compute_bytes if residual_bytes is None else residual_bytes
    return tokens * (compute_bytes * per_token + residual_bytes * residual) + c.num_layers * scores + logits


def kv_cache_bytes(config: GemmaConfig, batch_size: int, sequence_length: int, compute_bytes: int) -> int:
    """Keys and values of every layer: a slot per step (global), a ring buffer of the window (local).

    Gemma 4: each layer with its own KV heads and head size; a layer that borrows another's keys
    and values keeps none (``nn.cache_bytes(backbone.init_cache(batch, seq))`` gives the same).
    """
    total = 0
    for i, kind in enumerate(config.layer_types):
        kv, hd, _, has_key, _ = _layer(config, i)
        slots = min(config.sliding_window, sequence_length) if kind == LOCAL else sequence_length
        total += 2 * batch_size * kv * hd * compute_bytes * slots * has_key   # keys and values
    return total


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
    ple_bytes: int = 0                     # Gemma 4 E2B/E4B: the PLE table, apart from ``weights_bytes``
    active_parameters: int = 0             # the weights one token computes with (MoE: top-k experts)
    flops_per_token: int = 0               # 2 * active matmul weights (Kaplan et al., 2020); no attention
    weight_bytes_per_token: int = 0        # weights read to decode one token at batch 1
    notes: Tuple[str, ...] = ()            # what the numbers mean for this model, in words
    quantize: Optional[str] = None         # "int8": weight-only int8 (``nn/int8.py``)

    @property
    def t4_dtype(self) -> str:
        """The dtype to load with on a Colab/Kaggle T4: float16 (no bfloat16 tensor cores; see above)."""
        return T4_DTYPE

    @property
    def training(self) -> bool:
        return self.optimizer is not None

    @property
    def total_bytes(self) -> int:
        """Everything on the accelerator (the PLE table too: where gemma_kit keeps it)."""
        if not self.training:
            return self.weights_bytes + self.ple_bytes + self.kv_cache_bytes
        return (self.weights_bytes + self.ple_bytes + self.gradients_bytes + self.optimizer_bytes
                + max(self.activations_bytes, self.optimizer_step_bytes))

    @property
    def total_bytes_with_ple_on_host(self) -> Optional[int]:
        """The accelerator's share when the PLE table sits in host memory; None when there is no
        table, or when full fine-tuning updates it (it then needs the accelerator)."""
        if not self.ple_bytes or (self.training and not self.lora_rank):
            return None
        return self.total_bytes - self.ple_bytes

    @property
    def fits(self) -> Dict[str, bool]:
        out = {name: self.total_bytes <= n * gb * GB for name, (n, gb) in DEVICES.items()}
        if self.budget_gb is not None:
            out["budget"] = self.total_bytes <= self.budget_gb * GB
        return out

    def rows(self):
        """(label, GB) for the table; terms that do not apply to this plan are left out."""
        rows = [("weights", self.weights_bytes)] + ([("PLE table", self.ple_bytes)] if self.ple_bytes else [])
        if self.training:
            rows += [("gradients", self.gradients_bytes), ("optimizer state", self.optimizer_bytes),
                     ("activations", self.activations_bytes), ("optimizer step", self.optimizer_step_bytes)]
        else:
            rows += [("KV cache", self.kv_cache_bytes)]
        return [(label, value / GB) for label, value in rows] + [("total", self.total_bytes / GB)]

    def _title(self):
        task = (f"{self.optimizer} fine-tuning" + (f", LoRA rank {self.lora_rank}" if self.lora_rank else "")
                if self.training else "generation")
        weights = f"int8 weights, {self.dtype} activations" if self.quantize else self.dtype
        return (f"{self.name}: {task}, {weights}, batch {self.batch_size} x {self.sequence_length} tokens, "
                f"{self.backend} ({self.parameters:,} parameters, {self.trainable_parameters:,} trainable)")

    def _t4_line(self):
        return f"{self.t4_dtype} (no bfloat16 units; residual stream float32)"

    def _fit_label(self, name):
        if name == "budget":
            return f"budget ({self.budget_gb:g} GB)"
        n, gb = DEVICES[name]
        return f"{name} ({n * gb} GB)"

    def __str__(self):
        lines = [self._title()] + [f"  {label:<16} {gb:10.2f} GB" for label, gb in self.rows()]
        lines += [f"  fits {self._fit_label(k):<24} {'yes' if ok else 'no'}" for k, ok in self.fits.items()]
        lines += [f"  {'dtype on a T4':<29} {self._t4_line()}"]
        return "\n".join(lines + [f"  - {note}" for note in self.notes])

    def _repr_html_(self):
        cells = "".join(f"<tr><td>{label}</td><td style='text-align:right'>{gb:,.2f} GB</td></tr>"
                        for label, gb in self.rows())
        cells += "".join(f"<tr><td>fits {self._fit_label(k)}</td><td style='text-align:right'>"
                         f"{'yes' if ok else 'no'}</td></tr>" for k, ok in self.fits.items())
        cells += f"<tr><td>dtype on a T4</td><td style='text-align:right'>{self._t4_line()}</td></tr>"
        notes = "".join(f"<li>{note}</li>" for note in self.notes)
        return f"<table><caption>{self._title()}</caption>{cells}</table>" + (f"<ul>{notes}</ul>" if notes else "")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "total_bytes": self.total_bytes, "fits": self.fits,
                "t4_dtype": self.t4_dtype}


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
                backend: Optional[str] = None, quantize: Optional[str] = None) -> MemoryPlan:
    """Bytes for weights, training state, activations and KV cache; ``optimizer=None`` plans generation.

    ``name_or_config``: a preset name (``"gemma_2b_en"``), a checkpoint path or a ``GemmaConfig``.
    ``backend``: the Keras backend whose measured constants to use (default: the current one).
    ``quantize="int8"``: weight-only int8 (``gemma_kit.load(..., quantize="int8")``), for
    generation or LoRA.
    """
    config = _config_of(name_or_config)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize={quantize!r} is not supported; choose None or 'int8'")
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

    if quantize and optimizer is not None and not lora_rank:
        raise ValueError(f"quantize={quantize!r} with optimizer={optimizer!r} and no lora_rank: int8 weights are "
                         "frozen; plan generation (optimizer=None) or LoRA on the int8 base (lora_rank=...)")
    weight_bytes, compute_bytes = DTYPES[dtype]
    logits_copies, step_copies = BACKENDS[backend]
    gemma4 = isinstance(config, Gemma4Config)
    parameters = config.num_parameters()
    ple = config.per_layer_embedding_parameters() if gemma4 else 0
    active = config.active_parameters() if gemma4 else parameters
    adapters = lora_parameters(config, lora_rank, lora_targets) if lora_rank else 0
    frozen = config.num_layers if gemma4 else 0          # Gemma 4's layer_scalar: stored, not trained
    trainable = 0 if key is None else (adapters if lora_rank else parameters - frozen)
    training = key is not None
    ple_row = config.num_layers * config.per_layer_input_dim if gemma4 else 0   # what a token reads of it
    base = (parameters - ple) * weight_bytes                     # the base weights' bytes
    read = (active + ple_row) * weight_bytes                              # of them, read per token
    residual_bytes = 4 if residual_dtype(dtype) == "float32" else compute_bytes     # float16: float32 stream
    if gemma4 and weight_bytes == 2 and residual_bytes == 4:     # float16: the PLE gate, projection are float32
        base += 2 * config.num_layers * config.hidden_dim * config.per_layer_input_dim * 2
        read += 2 * config.num_layers * config.hidden_dim * config.per_layer_input_dim * 2
    if quantize:                        # int8: every weight but Gemma 4's experts; LoRA adapters float32
        experts = config.num_layers * config.num_experts * 3 * config.hidden_dim * config.expert_intermediate_dim \
            if gemma4 and config.num_experts else 0
        active_experts = experts * config.num_experts_per_token // config.num_experts if experts else 0
        base = round((parameters - ple - experts) * INT8_BYTES) + experts * 4
        read = round((active - active_experts + ple_row) * INT8_BYTES) + active_experts * 4
        weight_bytes = 4                                                  # adapters (and their gradients)
    plan = MemoryPlan(
        name=config.name, dtype=dtype, backend=backend, optimizer=key, lora_rank=lora_rank,
        batch_size=batch_size, sequence_length=sequence_length, parameters=parameters,
        trainable_parameters=trainable,
        weights_bytes=base + adapters * weight_bytes,
        gradients_bytes=trainable * weight_bytes,
        optimizer_bytes=OPTIMIZERS[key] * trainable * 4,
        activations_bytes=activation_bytes(config, batch_size, sequence_length, compute_bytes,
                                           logits_copies, residual_bytes) if training else 0,
        optimizer_step_bytes=step_copies * trainable * 4 if OPTIMIZERS[key] else 0,   # stateless SGD: none
        kv_cache_bytes=kv_cache_bytes(config, batch_size, sequence_length, compute_bytes),
        budget_gb=budget_gb, ple_bytes=round(ple * INT8_BYTES) if quantize else ple * weight_bytes,
        active_parameters=active, flops_per_token=2 * active, weight_bytes_per_token=read, quantize=quantize)
    return dataclasses.replace(plan, notes=gemma4_notes(config, plan)) if gemma4 else plan


def gemma4_notes(config: Gemma4Config, plan: MemoryPlan) -> Tuple[str, ...]:
    """What a Gemma 4 plan's numbers mean, in words: the PLE table, the experts, the shared KV cache."""
    c, notes = config, []
    if plan.ple_bytes:
        on_host = plan.total_bytes_with_ple_on_host
        where = (f"then the accelerator needs {on_host / GB:.2f} GB and the host {plan.ple_bytes / GB:.2f} GB"
                 if on_host is not None else
                 "but full fine-tuning updates it, so here it needs the accelerator, with its gradients")
        notes.append(f"The per-layer embedding (PLE) table, {c.per_layer_embedding_parameters():,} parameters "
                     f"({plan.ple_bytes / GB:.2f} GB), is counted apart from the {c.effective_parameters():,} "
                     f"'effective' weights that must sit on the accelerator. A token reads only its own row "
                     f"({c.num_layers} layers x {c.per_layer_input_dim} values), so the table can live in "
                     f"host memory: {where}. gemma_kit keeps it on the accelerator, and the total counts it there.")
    if c.num_experts:
        stored = c.num_layers * c.num_experts * 3 * c.hidden_dim * c.expert_intermediate_dim
        notes.append(f"All {c.num_experts} experts of each layer are stored ({stored:,} parameters, in "
                     f"'weights'), but each token is computed by {c.num_experts_per_token} of them: "
                     f"{plan.active_parameters:,} active parameters of {plan.parameters:,}. gemma_kit's "
                     f"lesson code runs every expert and weights the unchosen ones by 0; a server that "
                     f"dispatches tokens to their experts computes only the active ones.")
    if plan.training:
        return tuple(notes)
    notes.append(f"Per decoded token (batch 1, experts dispatched): about {plan.flops_per_token / 1e9:.1f} GFLOPs "
                 f"(2 per active parameter, attention not counted) and {plan.weight_bytes_per_token / GB:.2f} GB "
                 f"of weights read.")
    first = {t: c.layer_types.index(t) for t in dict.fromkeys(c.layer_types)}   # a layer of each type
    heads = ", ".join(f"{t} layers {c.kv_heads_of(i)} KV head(s) of size {c.head_dim_of(i)}" for t, i in first.items())
    shared = sum(c.kv_sharing(i) == "reuse" for i in range(c.num_layers))
    notes.append(f"KV cache: {heads}" + (f"; the last {shared} of {c.num_layers} layers reuse an earlier "
                                          "layer's keys and values (KV sharing) and keep no cache." if shared else "."))
    return tuple(notes)
