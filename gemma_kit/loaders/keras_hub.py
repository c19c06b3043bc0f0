"""Load keras-hub presets (a Kaggle ``keras/...`` download, or ``save_to_preset`` output).

A keras-hub preset is a folder:
- ``config.json``: ``{"class_name": "GemmaBackbone" | "Gemma3Backbone" | "Gemma4Backbone", "config": {...}}``,
  the backbone's constructor arguments (Gemma 4's map: ``keras_hub_gemma4.py``);
- ``model.weights.h5`` (or shards listed by ``model.weights.json``): the weights as Keras saves them;
- ``assets/tokenizer/vocabulary.spm``: the SentencePiece model; also ``metadata.json``,
  ``tokenizer.json`` (and ``task.json``, ``preprocessor.json`` for a saved task).

We read ``config.json`` ourselves and stream each tensor out of the ``.h5`` with ``h5py``: keras-hub is
never imported, and memory holds the weights once (plus one tensor in flight). Kaggle's presets store
bfloat16 values; the model gets ``dtype`` (float32 unless asked). Gemma 3 4B/12B/27B and every Gemma 4
preset also carry a vision (and audio) encoder: we load the language model and leave the encoders alone.

Where Keras puts a weight in the ``.h5``: a functional model's layers are stored under
``layers/<snake_case class name>[_<n>]`` (counted in graph order), then one group per attribute:
``layers/gemma_decoder_block_3/attention/query_dense/vars/0``. Block 0 has no suffix.

Conventions to undo while loading:
- attention kernels are ``EinsumDense`` kernels shaped ``(heads, hidden, head_dim)`` for q/k/v and
  ``(heads, head_dim, hidden)`` for the output; ours are ``Dense`` kernels ``(hidden, heads * head_dim)``
  and ``(heads * head_dim, hidden)``;
- keras-hub's Gemma 1/2 ``intermediate_dim`` is twice the width of one GeGLU branch (its Gemma 3 is not);
- ``query_head_dim_normalize=False`` means queries are scaled by ``(hidden_dim // num_query_heads) ** -0.5``
  (the 27B models). keras-hub's decoder blocks never pass the flag on to their attention layers, so
  keras-hub itself always scales by ``head_dim``: we follow the flag, as the original models do.
Norm scales need nothing: keras-hub's RMSNorm also multiplies by ``1 + scale``.
"""

from __future__ import annotations

import json
import os

import numpy as np
from tqdm.auto import tqdm

from ..models.gemma.config import GemmaConfig, gemma2_layer_types, gemma3_layer_types
from . import keras_hub_gemma4
from .registry import Format, folder_of

CONFIG_FILE, METADATA_FILE = "config.json", "metadata.json"
WEIGHTS_FILE, SHARDED_WEIGHTS_FILE = "model.weights.h5", "model.weights.json"
VOCABULARY_FILE = os.path.join("assets", "tokenizer", "vocabulary.spm")

# keras-hub backbone class -> the snake_case name Keras stores its decoder blocks under.
BLOCK_GROUPS = {"GemmaBackbone": "gemma_decoder_block", "Gemma3Backbone": "gemma3_decoder_block",
                "Gemma4Backbone": keras_hub_gemma4.BLOCK_GROUP}

# Our weight path (block i)            ->  keras-hub attribute path inside a decoder block
KERAS_HUB_NAMES = {
    "pre_attention_norm.scale": "pre_attention_norm",
    "attention.query.kernel": "attention/query_dense",
    "attention.key.kernel": "attention/key_dense",
    "attention.value.kernel": "attention/value_dense",
    "attention.attention_output.kernel": "attention/output_dense",
    "attention.query_norm.scale": "attention/query_norm",
    "attention.key_norm.scale": "attention/key_norm",
    "post_attention_norm.scale": "post_attention_norm",
    "pre_ffw_norm.scale": "pre_ffw_norm",
    "mlp.gate.kernel": "gating_ffw",          # the GELU branch
    "mlp.up.kernel": "gating_ffw_2",          # the linear branch
    "mlp.down.kernel": "ffw_linear",
    "post_ffw_norm.scale": "post_ffw_norm",
}


class KerasHubFormatError(ValueError):
    """A keras-hub preset we cannot read; the message names the file and the field or tensor."""


# -- config.json -> GemmaConfig ----------------------------------------------------------------------
def _read_json(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder}: the keras-hub preset has no {name}")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise KerasHubFormatError(f"{path} is not valid JSON ({error})") from error


def _preset_name(folder: str) -> str:
    """``gemma_2b_en`` for ``.../gemma_2b_en/2`` (a kagglehub download) or ``.../gemma_2b_en``."""
    parts = [p for p in os.path.abspath(folder).split(os.sep) if p]
    if len(parts) >= 2 and parts[-1].isdigit():
        return parts[-2]
    return parts[-1] if parts else "gemma"


def config_from_keras_hub(saved: dict, where: str = "config.json", name: str = "gemma") -> GemmaConfig:
    """A GemmaConfig from the contents of a keras-hub ``config.json`` (no tensor is read)."""
    class_name = saved.get("class_name")
    if class_name not in BLOCK_GROUPS:
        raise KerasHubFormatError(f"{where}: backbone class {class_name!r} is not supported "
                                  f"(supported: {', '.join(BLOCK_GROUPS)})")
    values = saved.get("config") or {}
    dtype = values.get("dtype")
    if isinstance(dtype, dict) and "Quantized" in str(dtype.get("class_name", "")):
        raise KerasHubFormatError(f"{where}: quantized presets ({dtype['class_name']}) are not supported")
    if class_name == "Gemma4Backbone":
        try:
            return keras_hub_gemma4.gemma4_config_from_keras_hub(values, where, name)
        except ValueError as error:
            raise KerasHubFormatError(str(error)) from error

    def get(field, default=KeyError):
        if field not in values:
            if default is KeyError:
                raise KerasHubFormatError(f"{where}: field 'config.{field}' is missing")
            return default
        return values[field]

    if bool(get("use_post_ffw_norm", False)) != bool(get("use_post_attention_norm", False)):
        raise KerasHubFormatError(f"{where}: use_post_ffw_norm and use_post_attention_norm differ; "
                                  "gemma_kit has one switch for both post norms")
    hidden, heads, layers = int(get("hidden_dim")), int(get("num_query_heads")), int(get("num_layers"))
    head_dim, windowed = int(get("head_dim")), bool(get("use_sliding_window_attention", False))
    intermediate = int(get("intermediate_dim"))
    common = dict(
        vocab_size=int(get("vocabulary_size")), hidden_dim=hidden, num_layers=layers, num_query_heads=heads,
        num_kv_heads=int(get("num_key_value_heads")), head_dim=head_dim,
        query_pre_attn_scalar=float(head_dim if get("query_head_dim_normalize", True) else hidden // heads),
        attn_soft_cap=get("attention_logit_soft_cap", None), final_soft_cap=get("final_logit_soft_cap", None),
        use_post_norms=bool(get("use_post_ffw_norm", False)), rms_norm_eps=float(get("layer_norm_epsilon", 1e-6)),
        sliding_window=int(get("sliding_window_size")) if windowed else None, name=name)
    if class_name == "GemmaBackbone":                 # Gemma 1, CodeGemma, Gemma 2
        if intermediate % 2:
            raise KerasHubFormatError(f"{where}: intermediate_dim={intermediate} is odd; keras-hub's Gemma "
                                      "stores twice the GeGLU width, so it must be even")
        return GemmaConfig(**common, intermediate_dim=intermediate // 2,
                           layer_types=gemma2_layer_types(layers) if windowed else ())
    # Gemma3Backbone: 5 local layers (RoPE base 10k) then 1 global (1M); every layer global without windows.
    for field in ("is_embedding_model", "use_bidirectional_attention"):
        if get(field, False):
            raise KerasHubFormatError(f"{where}: {field}=true is an embedding model, not a causal language model")
    if float(get("local_rope_scaling_factor", 1.0)) != 1.0:
        raise KerasHubFormatError(f"{where}: local_rope_scaling_factor={get('local_rope_scaling_factor')} "
                                  "is not supported (only the global layers' RoPE may be scaled)")
    scaling = float(get("global_rope_scaling_factor", 1.0))
    return GemmaConfig(**common, intermediate_dim=intermediate,
                       layer_types=gemma3_layer_types(layers) if windowed else (),
                       use_qk_norm=bool(get("use_query_key_norm", True)), rope_base_local=10_000.0,
                       rope_base_global=1_000_000.0, rope_scaling_factor=scaling,
                       # not in config.json: 32K for 270M/1B, 128K for the RoPE-scaled 4B/12B/27B
                       max_sequence_length=131_072 if scaling > 1.0 else 32_768)


def read_keras_hub_config(path) -> GemmaConfig:
    folder = folder_of(path)
    return config_from_keras_hub(_read_json(folder, CONFIG_FILE), os.path.join(folder, CONFIG_FILE),
                                 _preset_name(folder))


# -- model.weights.h5 -> tensors ----------------------------------------------------------------------
class H5Weights:
    """Read-only access to ``model.weights.h5``, or to the shards ``model.weights.json`` lists."""

    def __init__(self, folder):
        import h5py

        single, index = os.path.join(folder, WEIGHTS_FILE), os.path.join(folder, SHARDED_WEIGHTS_FILE)
        if os.path.isfile(single):
            names = [WEIGHTS_FILE]
        elif os.path.isfile(index):
            weight_map = _read_json(folder, SHARDED_WEIGHTS_FILE).get("weight_map", {})
            names = sorted({n for v in weight_map.values() for n in (v if isinstance(v, list) else [v])})
        else:
            raise FileNotFoundError(f"{folder}: the keras-hub preset has no {WEIGHTS_FILE} "
                                    f"(nor {SHARDED_WEIGHTS_FILE})")
        self.where = single if names == [WEIGHTS_FILE] else index
        self.files = []
        for name in names:
            if not os.path.isfile(os.path.join(folder, name)):
                raise FileNotFoundError(f"{index} lists the shard {name}, which is missing")
            self.files.append(h5py.File(os.path.join(folder, name), "r"))

    def get(self, path: str) -> np.ndarray:
        """The tensor at ``path`` (e.g. ``layers/rms_normalization/vars/0``) as float32."""
        legacy = path.replace("layers/", "_layer_checkpoint_dependencies/", 1)   # files written by Keras 2.13
        for f in self.files:
            for candidate in (path, legacy):
                if candidate in f:
                    dataset = f[candidate]
                    value = np.asarray(dataset[()])            # a 0-d array for a scalar
                    if dataset.attrs.get("dtype") == "bfloat16":   # stored as 2 opaque bytes
                        import ml_dtypes
                        value = value.view(ml_dtypes.bfloat16)
                    if value.dtype.kind != "f" and value.dtype.name != "bfloat16":
                        raise KerasHubFormatError(f"{self.where}: tensor {path!r} has dtype {value.dtype}; "
                                                  "quantized weights are not supported")
                    return value.astype(np.float32)
        raise KerasHubFormatError(f"{self.where}: tensor {path!r} is missing")

    def close(self):
        for f in self.files:
            f.close()


def keras_hub_layout(class_name: str, num_layers: int, block_paths) -> dict:
    """{our weight path: keras-hub ``.h5`` path}, e.g. ``block_3/mlp.up.kernel`` ->
    ``layers/gemma_decoder_block_3/gating_ffw_2/vars/0``. ``block_paths``: our paths inside one block."""
    group = BLOCK_GROUPS[class_name]
    layout = {"token_embedding.embeddings": "layers/reversible_embedding/vars/0",
              "final_norm.scale": "layers/rms_normalization/vars/0"}
    for i in range(num_layers):
        block = group if i == 0 else f"{group}_{i}"
        for rest in block_paths:
            layout[f"block_{i}/{rest}"] = f"layers/{block}/{KERAS_HUB_NAMES[rest]}/vars/0"
    return layout


QKV = ("query.kernel", "key.kernel", "value.kernel")


def keras_hub_shape(weight_path: str, config: GemmaConfig, our_shape) -> tuple:
    """The shape keras-hub stores a weight in: ``(heads, hidden, head_dim)`` for q/k/v kernels,
    ``(heads, head_dim, hidden)`` for the attention output, ours for everything else."""
    d, hd = config.hidden_dim, config.head_dim
    if weight_path.endswith(QKV):
        return (config.num_query_heads if weight_path.endswith("query.kernel") else config.num_kv_heads, d, hd)
    if weight_path.endswith("attention_output.kernel"):
        return (config.num_query_heads, hd, d)
    return tuple(our_shape)


def from_keras_hub_tensor(weight_path: str, value: np.ndarray, our_shape) -> np.ndarray:
    """A keras-hub tensor in our layout: EinsumDense attention kernels become Dense kernels."""
    if weight_path.endswith(QKV):
        value = value.transpose(1, 0, 2)          # (heads, hidden, head_dim) -> (hidden, heads, head_dim)
    return value.reshape(our_shape)               # (hidden, heads * head_dim); output: (heads * head_dim, hidden)


def load_keras_hub_weights(backbone, folder, class_name) -> None:
    """Stream every tensor of the preset's ``.h5`` into ``backbone``, checking shapes."""
    config, weights = backbone.config, H5Weights(folder)
    gemma4 = class_name == "Gemma4Backbone"
    shape_of = keras_hub_gemma4.keras_hub_shape if gemma4 else keras_hub_shape
    to_ours = keras_hub_gemma4.to_ours if gemma4 else from_keras_hub_tensor
    try:
        targets = backbone.weights_by_path()
        layout = (keras_hub_gemma4.h5_layout(config) if gemma4
                  else keras_hub_layout(class_name, config.num_layers, KERAS_HUB_NAMES))
        for weight_path, variable in tqdm(targets.items(), desc=f"Loading {_preset_name(folder)}",
                                          unit="tensor", leave=False):
            h5_path = layout[weight_path]
            value = weights.get(h5_path)
            expected = shape_of(weight_path, config, variable.shape)
            if value.shape != expected:
                raise KerasHubFormatError(f"{weights.where}: tensor {h5_path!r} has shape {value.shape}, but "
                                          f"{CONFIG_FILE} implies {expected} (for our {weight_path})")
            value = to_ours(weight_path, value, tuple(variable.shape))
            variable.assign(np.ascontiguousarray(value).astype(variable.dtype, copy=False))
            del value
    finally:
        weights.close()


# -- the format --------------------------------------------------------------------------------------
def is_keras_hub_preset(path) -> bool:
    """A folder (or its config.json / weights file) whose config.json names a Keras class, or whose
    metadata.json names a Keras version."""
    path = os.fspath(path)
    if not os.path.isdir(path) and os.path.basename(path) not in (CONFIG_FILE, WEIGHTS_FILE, SHARDED_WEIGHTS_FILE):
        return False
    folder = folder_of(path)
    for name, keys in ((CONFIG_FILE, ("class_name", "config")), (METADATA_FILE, ("keras_version",))):
        try:
            with open(os.path.join(folder, name)) as f:
                values = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(values, dict) and all(k in values for k in keys):
            return True
    return False


def load_keras_hub(path, dtype=None):
    """(config, backbone, tokenizer) from a keras-hub preset folder."""
    from ..models import backbone_class
    from ..tokenizer import GemmaTokenizer

    folder = folder_of(path)
    saved = _read_json(folder, CONFIG_FILE)
    config = config_from_keras_hub(saved, os.path.join(folder, CONFIG_FILE), _preset_name(folder))
    vocabulary = os.path.join(folder, VOCABULARY_FILE)
    if not os.path.isfile(vocabulary):
        raise FileNotFoundError(f"{folder}: the keras-hub preset has no tokenizer ({VOCABULARY_FILE})")
    tokenizer = GemmaTokenizer.from_file(vocabulary)
    backbone = backbone_class(config)(config, dtype=dtype, random_init=False)
    load_keras_hub_weights(backbone, folder, saved["class_name"])
    return config, backbone, tokenizer


KERAS_HUB_FORMAT = Format("keras_hub", is_keras_hub_preset, load_keras_hub, read_keras_hub_config)
