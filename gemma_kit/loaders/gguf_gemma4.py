"""Gemma 4 in a GGUF file (llama.cpp's architecture ``gemma4``): metadata -> ``Gemma4Config``, tensors -> weights.

llama.cpp's converter (``convert_hf_to_gguf.py``, class ``Gemma4Model``) writes a transformers
checkpoint like this; its reader is ``src/models/gemma4.cpp``.

| GGUF metadata (``gemma4.`` + ...)     | ``Gemma4Config`` field           | note                                  |
|---------------------------------------|----------------------------------|---------------------------------------|
| ``attention.sliding_window_pattern``  | ``layer_types``                  | one bool per layer, true = sliding    |
| ``attention.key_length_swa``          | ``head_dim``                     | sliding layers' head size             |
| ``attention.key_length``              | ``global_head_dim``              | global layers' head size              |
| ``attention.head_count_kv``           | ``num_kv_heads``, ``num_global_kv_heads`` | a number, or one per layer  |
| ``feed_forward_length``               | ``intermediate_dim``, ``use_double_wide_mlp`` | a number, or one per layer |
| ``attention.shared_kv_layers``        | ``num_kv_shared_layers``         |                                       |
| ``embedding_length_per_layer_input``  | ``per_layer_input_dim``          | 0: no per-layer embeddings            |
| ``expert_count``, ``expert_used_count``, ``expert_feed_forward_length`` | the experts |              |
| ``rope.freq_base``, ``rope.freq_base_swa`` | ``rope_base_global``, ``rope_base_local`` |            |
| tensor ``rope_freqs`` (1 or 1e30 each) | ``rope_fraction_global``        | see below                             |
| no ``blk.N.attn_v`` on global layers  | ``attention_k_eq_v``             | llama.cpp then uses the keys as values |

What the converter does to the tensors, and so what we undo:
- names only, from the gguf package's ``TensorNameMap`` (``TENSORS`` below); norms are stored as
  they are (``Gemma4Model.norm_shift`` is 0: Gemma 4's RMSNorm multiplies by ``weight``, no ``1 +``);
- matrices are ``[out, in]``: transpose to Keras' ``(in, out)``; experts are stored
  ``ffn_gate_up_exps (experts, 2 * expert_dim, hidden)``, gate half first, and
  ``ffn_down_exps (experts, hidden, expert_dim)``: split the halves, swap the last two axes;
- the router's ``scale`` becomes ``blk.N.ffn_gate_inp.scale``, ``per_expert_scale`` becomes
  ``blk.N.ffn_down_exps.scale`` and ``layer_scalar`` becomes ``blk.N.layer_output_scale``;
- "proportional" RoPE (only the first quarter of a global head's frequencies turn) is written as
  full RoPE (``rope.dimension_count`` = the head size) with a ``rope_freqs`` tensor of frequency
  divisors: 1 for each rotated pair, 1e30 (an angle of ~0: no rotation) for the others.

As llama.cpp reads the file: ``layer_output_scale`` and ``ffn_down_exps.scale`` may be missing
(then 1); the output layer is ``token_embd`` (a separate ``output.weight`` is refused: Gemma 4
ties it); a KV-shared layer borrows from layer ``first_shared - 2`` (sliding) or ``- 1`` (global),
which must be transformers' "last non-shared layer of its type", or the file is refused.
"""

from __future__ import annotations

import os

import numpy as np
from tqdm.auto import tqdm

from ..models.gemma.config import GLOBAL, LOCAL
from ..models.gemma4.config import Gemma4Config
from ..nn.int8 import Int8Weight
from .gguf_file import GGUFError, assign_int8

ARCH = "gemma4"
NO_ROTATION = 1e29          # rope_freqs entries above this mean "this pair does not turn" (llama.cpp writes 1e30)

# Our weight path -> GGUF tensor name. In a block, "blk.{i}." goes in front.
TENSORS = {
    "token_embedding.embeddings": "token_embd.weight",
    "final_norm.scale": "output_norm.weight",
    "per_layer_embedding/token_table.embeddings": "per_layer_token_embd.weight",
    "per_layer_embedding/context_projection.kernel": "per_layer_model_proj.weight",
    "per_layer_embedding/context_norm.scale": "per_layer_proj_norm.weight",
}
BLOCK = {
    "pre_attention_norm.scale": "attn_norm.weight",
    "attention.query.kernel": "attn_q.weight",
    "attention.key.kernel": "attn_k.weight",
    "attention.value.kernel": "attn_v.weight",
    "attention.attention_output.kernel": "attn_output.weight",
    "attention.query_norm.scale": "attn_q_norm.weight",
    "attention.key_norm.scale": "attn_k_norm.weight",
    "post_attention_norm.scale": "post_attention_norm.weight",
    "pre_ffw_norm.scale": "ffn_norm.weight",
    "mlp.gate.kernel": "ffn_gate.weight",
    "mlp.up.kernel": "ffn_up.weight",
    "mlp.down.kernel": "ffn_down.weight",
    "post_ffw_norm.scale": "post_ffw_norm.weight",
    "post_ffw_norm_dense.scale": "post_ffw_norm_1.weight",       # the dense MLP's, in an MoE block
    "pre_ffw_norm_experts.scale": "pre_ffw_norm_2.weight",
    "post_ffw_norm_experts.scale": "post_ffw_norm_2.weight",
    "experts.router.kernel": "ffn_gate_inp.weight",
    "experts.router_scale": "ffn_gate_inp.scale",
    "experts.per_expert_scale": "ffn_down_exps.scale",
    "experts.gate": "ffn_gate_up_exps.weight",                   # first half
    "experts.up": "ffn_gate_up_exps.weight",                     # second half
    "experts.down": "ffn_down_exps.weight",
    "per_layer_gate.kernel": "inp_gate.weight",
    "per_layer_projection.kernel": "proj.weight",
    "post_per_layer_norm.scale": "post_norm.weight",
    ".layer_scalar": "layer_output_scale.weight",                # "block_3.layer_scalar"
}
# Newer llama.cpp files may store the expert halves apart; llama.cpp reads either.
SPLIT_EXPERTS = {"experts.gate": "ffn_gate_exps.weight", "experts.up": "ffn_up_exps.weight"}
# Tensors llama.cpp treats as optional (TENSOR_NOT_REQUIRED): a missing one means 1.
OPTIONAL_ONES = ("experts.per_expert_scale", ".layer_scalar")


def gguf_name(weight_path: str) -> str:
    """``block_3/attention.query.kernel`` -> ``blk.3.attn_q.weight``; ``final_norm.scale`` -> ``output_norm.weight``."""
    if weight_path in TENSORS:
        return TENSORS[weight_path]
    block, sep, rest = weight_path.partition("/")
    if not sep:                                                   # "block_3.layer_scalar"
        block, rest = weight_path.split(".", 1)
        rest = "." + rest
    return f"blk.{int(block.split('_')[1])}.{BLOCK[rest]}"


def _metadata_reader(gguf_file):
    metadata, path = gguf_file.metadata, gguf_file.path

    def get(name, default=None, required=False):
        key = f"{ARCH}.{name}"
        if key not in metadata:
            if required:
                raise GGUFError(f"{path}: metadata field {key!r} is missing (llama.cpp's gemma4 loader needs it)")
            return default
        return metadata[key]

    def per_layer(name, layers, default=None):
        """A number for every layer, from a number or from a list of one per layer."""
        value = get(name, default, required=default is None)
        values = [int(v) for v in np.atleast_1d(value)]
        if len(values) == 1:
            return values * layers
        if len(values) != layers:
            raise GGUFError(f"{path}: metadata field '{ARCH}.{name}' has {len(values)} entries for {layers} layers")
        return values

    return get, per_layer


def _f32(value) -> float:
    """A float32 from the file as the shortest decimal that reads back as it: 1e-06, not 9.99999997e-07."""
    return float(str(np.float32(value)))


def _one_value(values, what, key, path):
    if len(set(values)) != 1:
        raise GGUFError(f"{path}: metadata field {key!r} gives {what} different values {sorted(set(values))}; "
                        "Gemma4Config has one per layer type")
    return values[0]


def rope_fraction(gguf_file, head_dim: int) -> float:
    """The share of a global head that RoPE rotates, read from the ``rope_freqs`` divisors (1, ..., 1, 1e30, ...)."""
    path = gguf_file.path
    if "rope_freqs.weight" not in gguf_file.tensors:
        raise GGUFError(f"{path}: tensor 'rope_freqs.weight' is missing (llama.cpp needs it for the global layers)")
    factors = gguf_file.dequantize("rope_freqs.weight").reshape(-1)            # (head_dim / 2,)
    rotated = int(np.sum(factors == 1.0))
    if factors.shape[0] != head_dim // 2 or not (np.all(factors[:rotated] == 1.0)
                                                 and np.all(factors[rotated:] > NO_ROTATION)):
        raise GGUFError(f"{path}: tensor 'rope_freqs.weight' holds {factors.tolist()[:8]}...; only the "
                        f"proportional-RoPE pattern (1 for rotated pairs, then 1e30) of {head_dim // 2} entries "
                        "is supported")
    return 2 * rotated / head_dim


def gemma4_config_from_gguf(gguf_file) -> Gemma4Config:
    """A Gemma4Config from the metadata and the tensor index (which layers have values, experts, ...)."""
    path, tensors = gguf_file.path, gguf_file.tensors
    get, per_layer = _metadata_reader(gguf_file)
    layers = int(get("block_count", required=True))
    pattern = [bool(v) for v in np.atleast_1d(get("attention.sliding_window_pattern", required=True))]
    if len(pattern) != layers:
        raise GGUFError(f"{path}: metadata field '{ARCH}.attention.sliding_window_pattern' has {len(pattern)} "
                        f"entries for {layers} layers")
    types = tuple(LOCAL if sliding else GLOBAL for sliding in pattern)
    head_dim = int(get("attention.key_length_swa", required=True))
    global_head_dim = int(get("attention.key_length", required=True))
    # Values must have the keys' size, and RoPE must turn whole heads (proportional RoPE is in rope_freqs).
    for key, expected in (("attention.value_length_swa", head_dim), ("rope.dimension_count_swa", head_dim),
                          ("attention.value_length", global_head_dim), ("rope.dimension_count", global_head_dim)):
        if int(get(key, expected)) != expected:
            raise GGUFError(f"{path}: metadata field '{ARCH}.{key}' is {get(key)}, expected {expected}; "
                            "other sizes are not supported")
    if float(get("rope.scaling.factor", 1.0)) not in (0.0, 1.0):
        raise GGUFError(f"{path}: metadata field '{ARCH}.rope.scaling.factor' = {get('rope.scaling.factor')} "
                        "(RoPE scaling) is not supported")
    if "output.weight" in tensors:
        raise GGUFError(f"{path}: tensor 'output.weight' (an output layer of its own) is not supported: "
                        "Gemma 4 ties its output layer to 'token_embd.weight'")

    heads = _one_value(per_layer("attention.head_count", layers), "its layers", f"{ARCH}.attention.head_count", path)
    kv = per_layer("attention.head_count_kv", layers, default=heads)
    key = f"{ARCH}.attention.head_count_kv"
    of_type = lambda kind: [kv[i] for i in range(layers) if types[i] == kind]     # noqa: E731
    local_kv = _one_value(of_type(LOCAL) or [kv[0]], "sliding layers", key, path)
    global_kv = _one_value(of_type(GLOBAL) or [local_kv], "global layers", key, path)

    shared = int(get("attention.shared_kv_layers", 0))
    first_shared = layers - shared
    for kind, back in ((LOCAL, 2), (GLOBAL, 1)):   # llama.cpp: a shared layer reads layer first_shared - back
        owners = [i for i in range(first_shared) if types[i] == kind]
        if shared and kind in types[first_shared:] and (not owners or owners[-1] != first_shared - back):
            raise GGUFError(f"{path}: the KV-shared {kind} layers read layer {first_shared - back} in llama.cpp, "
                            f"but the last non-shared {kind} layer is {owners[-1] if owners else None} "
                            "(transformers' rule); this layer pattern is not supported")

    ffn = per_layer("feed_forward_length", layers)
    double = shared > 0 and all(ffn[i] == 2 * ffn[0] for i in range(first_shared, layers))
    if ffn != [ffn[0] * (2 if double and i >= first_shared else 1) for i in range(layers)]:
        raise GGUFError(f"{path}: metadata field '{ARCH}.feed_forward_length' = {ffn} is not supported (one width, "
                        "doubled on the KV-shared layers at most)")

    own_kv = range(first_shared)
    missing_v = [i for i in own_kv if f"blk.{i}.attn_k.weight" in tensors and f"blk.{i}.attn_v.weight" not in tensors]
    k_eq_v = bool(missing_v)
    if missing_v and missing_v != [i for i in own_kv if types[i] == GLOBAL]:
        raise GGUFError(f"{path}: layers {missing_v} have keys but no values ('blk.N.attn_v.weight'); Gemma4Config "
                        "can reuse keys as values on all global layers only")

    moe = [f"blk.{i}.ffn_gate_inp.weight" in tensors for i in range(layers)]
    experts = int(get("expert_count", required=True)) if all(moe) else 0
    if any(moe) and not all(moe):
        raise GGUFError(f"{path}: only layers {[i for i, m in enumerate(moe) if m]} have experts; "
                        "Gemma4Config has experts in every layer or in none")
    ple_dim = int(get("embedding_length_per_layer_input", required=True))
    ple_vocab = None
    if ple_dim:
        if "per_layer_token_embd.weight" not in tensors:
            raise GGUFError(f"{path}: tensor 'per_layer_token_embd.weight' is missing "
                            f"('{ARCH}.embedding_length_per_layer_input' is {ple_dim})")
        ple_vocab = tensors["per_layer_token_embd.weight"].shape[0]
    soft_cap = get("final_logit_softcapping")
    if "tokenizer.ggml.tokens" not in gguf_file.metadata:
        raise GGUFError(f"{path}: metadata field 'tokenizer.ggml.tokens' is missing")
    try:
        return Gemma4Config(
            vocab_size=len(gguf_file.metadata["tokenizer.ggml.tokens"]), layer_types=types,
            hidden_dim=int(get("embedding_length", required=True)), num_layers=layers, num_query_heads=heads,
            num_kv_heads=local_kv, num_global_kv_heads=global_kv if global_kv != local_kv else None,
            head_dim=head_dim, global_head_dim=global_head_dim, intermediate_dim=ffn[0],
            sliding_window=int(get("attention.sliding_window", required=True)),
            final_soft_cap=None if soft_cap is None else _f32(soft_cap),
            rope_base_global=_f32(get("rope.freq_base", 10_000.0)),       # llama.cpp's defaults
            rope_base_local=_f32(get("rope.freq_base_swa", 10_000.0)),
            rope_fraction_global=rope_fraction(gguf_file, global_head_dim) if GLOBAL in types else 1.0,
            attention_k_eq_v=k_eq_v, num_kv_shared_layers=shared, use_double_wide_mlp=double,
            per_layer_input_dim=ple_dim, per_layer_vocab_size=ple_vocab,
            num_experts=experts, num_experts_per_token=int(get("expert_used_count", required=bool(experts)) or 0),
            expert_intermediate_dim=int(get("expert_feed_forward_length", required=bool(experts)) or 0),
            rms_norm_eps=_f32(get("attention.layer_norm_rms_epsilon", required=True)),
            max_sequence_length=int(get("context_length", required=True)),
            name=str(gguf_file.metadata.get("general.name", ARCH)).lower().replace(" ", "_"))
    except GGUFError:
        raise
    except ValueError as error:                       # Gemma4Config's own checks
        raise GGUFError(f"{path}: {error}") from error


def _read(gguf_file, weight_path: str, shape) -> np.ndarray:
    """The tensor for ``weight_path``, in our layout."""
    name, path, tensors = gguf_name(weight_path), gguf_file.path, gguf_file.tensors
    leaf = weight_path.split("/")[-1]
    if leaf in SPLIT_EXPERTS and name not in tensors:                 # gate and up stored apart
        name = name.replace(BLOCK[leaf], SPLIT_EXPERTS[leaf])
        value = gguf_file.dequantize(name) if name in tensors else None
    elif name in tensors:
        value = gguf_file.dequantize(name)
        if leaf in SPLIT_EXPERTS:                                     # (experts, 2 * f, hidden) -> one half
            value = np.split(value, 2, axis=1)[0 if leaf == "experts.gate" else 1]
    else:
        value = None
    if value is None:
        if weight_path.endswith(OPTIONAL_ONES):
            return np.ones(shape, np.float32)
        raise GGUFError(f"{path}: tensor {name!r} is missing (needed for {weight_path})")
    if value.ndim == 3:
        value = value.transpose(0, 2, 1)                              # experts' [out, in] -> (in, out)
    elif weight_path.endswith("kernel"):
        value = value.T                                               # [out, in] -> (in, out)
    if tuple(value.shape) != tuple(shape):
        raise GGUFError(f"{path}: tensor {name!r} has shape {tuple(value.shape)} after conversion, "
                        f"but the config expects {tuple(shape)} for {weight_path}")
    return value


def load_gemma4_weights(backbone, gguf_file) -> None:
    """Dequantize every tensor a ``Gemma4Backbone`` needs from ``gguf_file`` into its variables."""
    targets = backbone.weights_by_path()
    for weight_path, variable in tqdm(targets.items(), desc=f"Loading {os.path.basename(gguf_file.path)}",
                                      unit="tensor", leave=False):
        if isinstance(variable, Int8Weight):          # read into int8 in row chunks, no float copy
            assign_int8(variable, gguf_file, gguf_name(weight_path), weight_path)
            continue
        value = _read(gguf_file, weight_path, tuple(variable.shape))
        variable.assign(np.ascontiguousarray(value, dtype=np.float32).astype(variable.dtype, copy=False))
