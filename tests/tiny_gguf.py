"""Write small Gemma checkpoints as GGUF files with the ``gguf`` package's own writer.

Used to test the loader's mapping (transposes, ``1 + scale`` norms, config keys)
and its error messages on files we control. The vocabulary is a miniature of
Gemma's: the special tokens, 256 byte-fallback tokens and a few letters.
"""

import numpy as np
import gguf
from keras import ops

from gemma_kit.loaders.gguf import gguf_tensor_name

SPECIALS = [("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 2), ("<start_of_turn>", 4), ("<end_of_turn>", 4)]


def tiny_vocabulary(size, extra_pieces=None):
    """``[(piece, gguf token_type)] * size``; ``extra_pieces`` ``{id: piece}`` puts user-defined pieces
    at those ids (e.g. CodeGemma's ``{67: "<|fim_prefix|>", ...}``), shifting the later pieces up."""
    pieces = SPECIALS + [(f"<0x{i:02X}>", 6) for i in range(256)]
    letters = ["▁"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["▁" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += [(p, 1) for p in letters]
    for i, piece in sorted((extra_pieces or {}).items()):
        pieces.insert(i, (piece, 4))
    pieces += [(f"<unused{i}>", 5) for i in range(size - len(pieces))]
    assert len(pieces) == size, f"vocabulary of {size} is too small for {len(pieces)} pieces"
    return pieces


def tiny_tokenizer(size=320, add_space_prefix=True):
    """A real SentencePiece tokenizer over ``tiny_vocabulary(size)`` (bos 2, eos 1, unk 3, pad 0).

    ``add_space_prefix=False`` is what transformers' Gemma tokenizers do (no dummy "▁" prefix)."""
    from gemma_kit.tokenizer import GemmaTokenizer

    pieces, k = tiny_vocabulary(size), "tokenizer.ggml."
    metadata = {k + "model": "llama", k + "tokens": [p for p, _ in pieces], k + "token_type": [t for _, t in pieces],
                k + "scores": [0.0 if t != 1 else -float(i) for i, (_, t) in enumerate(pieces)],
                k + "bos_token_id": 2, k + "eos_token_id": 1, k + "unknown_token_id": 3, k + "padding_token_id": 0}
    if not add_space_prefix:
        metadata[k + "add_space_prefix"] = False
    return GemmaTokenizer.from_gguf_metadata(metadata)


def backbone_tensors(backbone):
    """{gguf name: float32 array in GGUF's conventions} for a GemmaBackbone's weights."""
    tensors = {}
    for path, variable in backbone.weights_by_path().items():
        value = ops.convert_to_numpy(variable)
        if path.endswith("scale"):
            value = value + 1.0                  # GGUF stores 1 + scale
        elif path.endswith("kernel"):
            value = value.T                      # (in, out) -> [out, in]
        tensors[gguf_tensor_name(path)] = value.astype(np.float32)
    return tensors


def write_gguf(path, config, tensors, arch="gemma3", drop=(), reshape=None, extra_pieces=None,
               add_space_prefix=None):
    """Write ``tensors`` with metadata from ``config``; ``drop`` omits tensors, ``reshape`` corrupts one.

    ``extra_pieces``: see ``tiny_vocabulary``; ``add_space_prefix``: written when given (real Gemma: False).
    """
    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_uint32(f"{arch}.embedding_length", config.hidden_dim)
    writer.add_uint32(f"{arch}.block_count", config.num_layers)
    writer.add_uint32(f"{arch}.feed_forward_length", config.intermediate_dim)
    writer.add_uint32(f"{arch}.attention.head_count", config.num_query_heads)
    writer.add_uint32(f"{arch}.attention.head_count_kv", config.num_kv_heads)
    writer.add_uint32(f"{arch}.attention.key_length", config.head_dim)
    writer.add_uint32(f"{arch}.attention.value_length", config.head_dim)
    writer.add_uint32(f"{arch}.context_length", config.max_sequence_length)
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", config.rms_norm_eps)
    if config.sliding_window:
        writer.add_uint32(f"{arch}.attention.sliding_window", config.sliding_window)
    writer.add_float32(f"{arch}.rope.freq_base", config.rope_base_global)
    pieces = tiny_vocabulary(config.vocab_size, extra_pieces)
    writer.add_string("tokenizer.ggml.model", "llama")
    if add_space_prefix is not None:
        writer.add_bool("tokenizer.ggml.add_space_prefix", add_space_prefix)
    writer.add_array("tokenizer.ggml.tokens", [p for p, _ in pieces])
    writer.add_array("tokenizer.ggml.scores", [0.0 if t != 1 else -float(i) for i, (_, t) in enumerate(pieces)])
    writer.add_array("tokenizer.ggml.token_type", [t for _, t in pieces])
    for key, value in (("bos", 2), ("eos", 1), ("unknown", 3), ("padding", 0)):
        writer.add_uint32(f"tokenizer.ggml.{key}_token_id", value)
    for name, value in tensors.items():
        if name in drop:
            continue
        if reshape and name == reshape:
            value = value[..., :-1]
        writer.add_tensor(name, np.ascontiguousarray(value, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)
