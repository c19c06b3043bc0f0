"""Load a Gemma model (config, weights, tokenizer) from a GGUF file.

GGUF (the llama.cpp / Ollama format) keeps everything in one file:
- hyper-parameters under ``<arch>.*`` keys (``gemma``, ``gemma2``, ``gemma3`` or ``gemma4``),
- the SentencePiece vocabulary under ``tokenizer.ggml.*``,
- quantized tensors named ``token_embd``, ``blk.N.attn_q``, ... (see ``TENSOR_NAMES``).

Two conventions to undo while loading:
- matrices are stored ``[out, in]`` (like torch ``Linear``); a Keras ``Dense``
  kernel is ``(in, out)``, so we transpose;
- llama.cpp's converter stores every Gemma RMSNorm weight as ``1 + scale``; our
  ``RMSNorm`` holds ``scale``, so we subtract 1.

Gemma 4 (``gemma4``) has its own config keys, tensor names and conventions (its norms are
stored as they are): ``gguf_gemma4.py``.
"""

from __future__ import annotations

import os

import numpy as np
from tqdm.auto import tqdm

from ..models.gemma.config import GemmaConfig, gemma2_layer_types, gemma3_layer_types
from ..nn.int8 import Int8Weight
from .gguf_file import GGUFError, assign_int8, read_gguf
from .gguf_gemma4 import gemma4_config_from_gguf, load_gemma4_weights
from .registry import Format

SUPPORTED_ARCHITECTURES = ("gemma", "gemma2", "gemma3", "gemma4")

# Our weight path (block i)            ->  GGUF tensor name
TENSOR_NAMES = {
    "pre_attention_norm.scale": "attn_norm",
    "attention.query.kernel": "attn_q",
    "attention.key.kernel": "attn_k",
    "attention.value.kernel": "attn_v",
    "attention.attention_output.kernel": "attn_output",
    "attention.query_norm.scale": "attn_q_norm",
    "attention.key_norm.scale": "attn_k_norm",
    "post_attention_norm.scale": "post_attention_norm",
    "pre_ffw_norm.scale": "ffn_norm",
    "mlp.gate.kernel": "ffn_gate",
    "mlp.up.kernel": "ffn_up",
    "mlp.down.kernel": "ffn_down",
    "post_ffw_norm.scale": "post_ffw_norm",
}


def _require(metadata, key, path):
    if key not in metadata:
        raise GGUFError(f"{path}: metadata field {key!r} is missing")
    return metadata[key]


def config_from_gguf_metadata(metadata: dict, path: str = "<gguf>") -> GemmaConfig:
    """A GemmaConfig from GGUF metadata alone (no tensor is read)."""
    arch = _require(metadata, "general.architecture", path)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(f"{path}: architecture {arch!r} is not a Gemma model "
                        f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
    if arch == "gemma4":
        raise GGUFError(f"{path}: a gemma4 config needs the tensor index too: use config_from_gguf(read_gguf(path))")
    get = lambda key, default=None: metadata.get(f"{arch}.{key}", default)  # noqa: E731
    hidden = int(_require(metadata, f"{arch}.embedding_length", path))
    layers = int(_require(metadata, f"{arch}.block_count", path))
    heads = int(_require(metadata, f"{arch}.attention.head_count", path))
    head_dim = int(get("attention.key_length", hidden // heads))
    tokens = _require(metadata, "tokenizer.ggml.tokens", path)
    common = dict(
        vocab_size=len(tokens), hidden_dim=hidden, num_layers=layers, num_query_heads=heads,
        num_kv_heads=int(get("attention.head_count_kv", heads)), head_dim=head_dim,
        intermediate_dim=int(_require(metadata, f"{arch}.feed_forward_length", path)),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-6)),
        max_sequence_length=int(get("context_length", 8192)),
        name=str(metadata.get("general.name", arch)).lower().replace(" ", "_"),
    )
    if arch == "gemma":
        return GemmaConfig(**common)
    if arch == "gemma2":
        return GemmaConfig(
            **common, layer_types=gemma2_layer_types(layers), sliding_window=int(get("attention.sliding_window", 4096)),
            attn_soft_cap=float(get("attn_logit_softcapping", 50.0)),
            final_soft_cap=float(get("final_logit_softcapping", 30.0)), use_post_norms=True,
            # GGUF has no query_pre_attn_scalar; llama.cpp uses hidden/heads for the 27B (46 layers).
            query_pre_attn_scalar=hidden / heads if layers == 46 else head_dim)
    # gemma3: GGUF stores only the global RoPE base; local layers use 10,000 (as llama.cpp does).
    return GemmaConfig(
        **common, layer_types=gemma3_layer_types(layers), sliding_window=int(get("attention.sliding_window", 1024)),
        use_post_norms=True, use_qk_norm=True, rope_base_global=float(get("rope.freq_base", 1e6)),
        rope_base_local=10_000.0, rope_scaling_factor=float(get("rope.scaling.factor", 1.0)),
        query_pre_attn_scalar=hidden / heads if layers == 62 else head_dim)   # 62 layers = Gemma 3 27B


def config_from_gguf(gguf_file):
    """The config of an opened GGUF file: a GemmaConfig, or a Gemma4Config for ``gemma4``."""
    if gguf_file.metadata.get("general.architecture") == "gemma4":
        return gemma4_config_from_gguf(gguf_file)
    return config_from_gguf_metadata(gguf_file.metadata, gguf_file.path)


def gguf_tensor_name(weight_path: str) -> str:
    """Map ``block_3/attention.query.kernel``-style paths to ``blk.3.attn_q.weight``."""
    if weight_path == "token_embedding.embeddings":
        return "token_embd.weight"
    if weight_path == "final_norm.scale":
        return "output_norm.weight"
    block, rest = weight_path.split("/", 1)
    return f"blk.{int(block.split('_')[1])}.{TENSOR_NAMES[rest]}.weight"


def load_gguf_weights(backbone, gguf_file) -> None:
    """Dequantize every tensor of ``gguf_file`` into ``backbone``'s variables, checking shapes."""
    targets = backbone.weights_by_path()
    path = gguf_file.path
    for weight_path, variable in tqdm(targets.items(), desc=f"Loading {os.path.basename(path)}", unit="tensor",
                                      leave=False):
        name = gguf_tensor_name(weight_path)
        if name not in gguf_file.tensors:
            raise GGUFError(f"{path}: tensor {name!r} is missing (needed for {weight_path})")
        if isinstance(variable, Int8Weight):          # read into int8 in row chunks, no float copy
            assign_int8(variable, gguf_file, name, weight_path)
            continue
        value = gguf_file.dequantize(name)
        if weight_path.endswith("scale"):
            value = value - 1.0                  # GGUF stores 1 + scale
        elif weight_path.endswith("kernel"):
            value = value.T                      # [out, in] -> (in, out)
        if tuple(value.shape) != tuple(variable.shape):
            raise GGUFError(f"{path}: tensor {name!r} has shape {tuple(value.shape)} after conversion, "
                            f"but the config expects {tuple(variable.shape)} for {weight_path}")
        variable.assign(np.ascontiguousarray(value, dtype=np.float32).astype(variable.dtype, copy=False))


def load_gguf(path, dtype=None):
    """(config, backbone, tokenizer) from a ``.gguf`` file."""
    from ..models import Gemma4Config, backbone_class
    from ..tokenizer import GemmaTokenizer

    gguf_file = read_gguf(path)
    config = config_from_gguf(gguf_file)
    try:
        tokenizer = GemmaTokenizer.from_gguf_metadata(gguf_file.metadata)
    except ValueError as error:          # e.g. a vocabulary that is not SentencePiece's
        raise GGUFError(f"{gguf_file.path}: {error}") from error
    backbone = backbone_class(config)(config, dtype=dtype, random_init=False)
    (load_gemma4_weights if isinstance(config, Gemma4Config) else load_gguf_weights)(backbone, gguf_file)
    return config, backbone, tokenizer


def read_gguf_config(path) -> GemmaConfig:
    """The config of a ``.gguf`` file, from its header (Gemma 4: and its tiny ``rope_freqs`` tensor)."""
    return config_from_gguf(read_gguf(path))


def is_gguf(path) -> bool:
    """A ``.gguf`` file, or any file that starts with the magic bytes ``GGUF``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return path.endswith(".gguf") or f.read(4) == b"GGUF"


GGUF_FORMAT = Format("gguf", is_gguf, load_gguf, read_gguf_config)
