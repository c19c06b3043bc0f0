"""Write small Gemma checkpoints as GGUF files with the ``gguf`` package's own writer.

Used to test the loader's mapping (transposes, ``1 + scale`` norms, config keys)
and its error messages on files we control; ``write_gemma4_gguf`` writes a transformers
Gemma 4 exactly as llama.cpp's converter does. The vocabulary is a miniature of
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


# -- Gemma 4 -----------------------------------------------------------------------------------------
# A transformers Gemma4ForCausalLM written as llama.cpp's converter writes it (convert_hf_to_gguf.py,
# ``Gemma4Model`` in ``conversion/gemma.py``): tensor names from the gguf package's own TensorNameMap,
# the converter's special cases, the generated ``rope_freqs`` and the metadata of ``set_gguf_parameters``.
# Checked against that converter (the llama.cpp inside llama-cpp-python 0.3.36) on the three tiny
# variants, --outtype f32 and q8_0: the same gemma4.* keys and types, tensor names, shapes, types and
# bytes. The vocabulary differs: the converter writes Gemma 4's BPE merges ("gemma4"), this the tiny
# SentencePiece one ("llama") that gemma_kit's tokenizer reads.


def gemma4_metadata(hparams: dict, ftype: int) -> dict:
    """``{key: value}`` as the converter leaves them (it writes some keys twice; the last value wins)."""
    layers, types = hparams["num_hidden_layers"], hparams["layer_types"]
    swa = [t == "sliding_attention" for t in types]
    rope = hparams["rope_parameters"]
    per_layer = {int(i): c for i, c in (hparams.get("per_layer_config") or {}).items()
                 if types[int(i)] == "full_attention"}                  # transformers 5.2x's dialect
    head_dim_full = hparams.get("global_head_dim") or next(c["head_dim"] for c in per_layer.values() if "head_dim" in c)
    kv_full = hparams.get("num_global_key_value_heads") or next(
        (c["num_key_value_heads"] for c in per_layer.values() if "num_key_value_heads" in c), None)
    first_shared = layers - hparams["num_kv_shared_layers"]
    ffn = hparams["intermediate_size"]
    out = {
        "block_count": layers, "context_length": hparams["max_position_embeddings"],
        "embedding_length": hparams["hidden_size"],
        "feed_forward_length": [ffn if i < first_shared else 2 * ffn for i in range(layers)]
        if hparams.get("use_double_wide_mlp") else ffn,
        "attention.head_count": hparams["num_attention_heads"],
        "attention.head_count_kv": [hparams["num_key_value_heads"] if s else kv_full for s in swa]
        if kv_full is not None else hparams["num_key_value_heads"],
        "rope.freq_base": rope["full_attention"]["rope_theta"],
        "rope.freq_base_swa": rope["sliding_attention"]["rope_theta"],
        "attention.layer_norm_rms_epsilon": hparams["rms_norm_eps"],
        "attention.key_length": head_dim_full, "attention.value_length": head_dim_full,
        "attention.key_length_swa": hparams["head_dim"], "attention.value_length_swa": hparams["head_dim"],
        "attention.sliding_window": hparams["sliding_window"],
        "attention.shared_kv_layers": hparams["num_kv_shared_layers"],
        "embedding_length_per_layer_input": hparams.get("hidden_size_per_layer_input") or 0,
        "attention.sliding_window_pattern": swa,
        "rope.dimension_count": head_dim_full,          # "proportional" RoPE is done by rope_freqs instead
        "rope.dimension_count_swa": hparams["head_dim"],
    }
    if hparams.get("num_experts"):
        out.update({"expert_count": hparams["num_experts"], "expert_used_count": hparams["top_k_experts"],
                    "expert_feed_forward_length": hparams["moe_intermediate_size"]})
    if hparams.get("final_logit_softcapping"):
        out["final_logit_softcapping"] = hparams["final_logit_softcapping"]
    return {**{f"gemma4.{k}": v for k, v in out.items()}, "general.file_type": ftype}


def converter_name(name: str, name_map) -> str:
    """The GGUF name the converter gives the transformers tensor ``name`` (``name_map``: gguf's TensorNameMap)."""
    for theirs, ours in (("router.scale", "ffn_gate_inp.scale"), ("router.per_expert_scale", "ffn_down_exps.scale")):
        if name.endswith(theirs):                  # Gemma4Model.modify_tensors: the router's two scales
            return name.replace("model.layers.", "blk.").replace(theirs, ours)
    if name.endswith("layer_scalar") or (".experts." in name and not name.endswith(".weight")):
        name += ".weight"                          # Gemma4Model.filter_tensors
    return name_map.get_name(name, try_suffixes=(".weight", ".bias"))


def gemma4_tensors(model) -> dict:
    """{GGUF name: float32 array} for a transformers Gemma4ForCausalLM, named and shaped as the converter does."""
    hparams = model.config.to_dict()
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA4, hparams["num_hidden_layers"])
    # tied: save_pretrained leaves lm_head out, so the converter never sees it; norms as they are (no +1)
    tensors = {converter_name(name, name_map): value.float().numpy()
               for name, value in model.state_dict().items() if name != "lm_head.weight"}
    # generate_extra_tensors: RoPE frequency divisors of the global layers, 1 for a rotated pair, 1e30 (no turn) else.
    head_dim = gemma4_metadata(hparams, 0)["gemma4.attention.key_length"]
    rotated = int(head_dim * hparams["rope_parameters"]["full_attention"]["partial_rotary_factor"] / 2)
    tensors["rope_freqs.weight"] = np.array([1.0] * rotated + [1e30] * (head_dim // 2 - rotated), np.float32)
    return tensors


def as_stored(model, qtype):
    """A copy of the transformers ``model`` whose weights went through the file's types (Q8_0, F16, F32)."""
    import copy

    import torch

    model = copy.deepcopy(model)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA4, model.config.num_hidden_layers)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name == "lm_head.weight":           # tied to the embedding: one tensor, rounded once
                continue
            value = tensor.float().numpy()
            kind = stored_type(converter_name(name, name_map), value, qtype)
            stored = gguf.quants.dequantize(gguf.quants.quantize(value, kind), kind).reshape(value.shape)
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(stored, dtype=np.float32)))
    return model


def stored_type(name, value, qtype):
    """The ggml type the converter picks for ``name`` with ``--outtype f32`` or ``q8_0`` (``prepare_tensors``)."""
    keep_f32 = (value.ndim <= 1 or name.endswith("_norm.weight") or ".ffn_gate_inp." in name
                or not name.endswith(".weight"))
    if qtype == "F32" or keep_f32:
        return gguf.GGMLQuantizationType.F32
    if value.shape[-1] % 32:                      # Q8_0 packs rows in blocks of 32: the converter falls back to F16
        return gguf.GGMLQuantizationType.F16
    return gguf.GGMLQuantizationType.Q8_0


def write_gemma4_gguf(path, model, qtype="F32", drop=(), drop_keys=(), metadata=None, tensors=None):
    """Write a transformers ``Gemma4ForCausalLM`` as llama.cpp's converter would, with the tiny vocabulary.

    ``qtype``: "F32" or "Q8_0" (``--outtype``). For the error tests: ``drop`` omits tensors, ``drop_keys``
    metadata keys; ``metadata`` and ``tensors`` (``{name: value}``) replace or add entries.
    """
    ftype = {"F32": gguf.LlamaFileType.ALL_F32, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[qtype]
    pieces, k = tiny_vocabulary(model.config.vocab_size), "tokenizer.ggml."
    vocabulary = {k + "model": "llama", k + "tokens": [p for p, _ in pieces],
                  k + "scores": [0.0 if t != 1 else -float(i) for i, (_, t) in enumerate(pieces)],
                  k + "token_type": [t for _, t in pieces], k + "bos_token_id": 2, k + "eos_token_id": 1,
                  k + "unknown_token_id": 3, k + "padding_token_id": 0,
                  k + "add_space_prefix": False, k + "add_bos_token": True}      # as Gemma4Model.set_vocab writes
    values = {**gemma4_metadata(model.config.to_dict(), int(ftype)), **vocabulary, **(metadata or {})}
    writer = gguf.GGUFWriter(str(path), arch=values.pop("general.architecture", "gemma4"))
    writer.add_name("tiny gemma4")
    for key, value in values.items():
        if key in drop_keys:
            continue
        if isinstance(value, (list, tuple)):
            writer.add_array(key, list(value))
        elif isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_uint32(key, int(value))
    for name, value in {**gemma4_tensors(model), **(tensors or {})}.items():
        if name in drop:
            continue
        kind = stored_type(name, value, qtype)
        writer.add_tensor(name, gguf.quants.quantize(value, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)
