"""Pre-training a small language model from scratch: corpus, tokenizer, packing, loss, save and load.

    corpus = stdlib_corpus()                               # {"train": [source, ...], "held_out": [...]}
    tokenizer = train_tokenizer(corpus["train"])           # a SentencePiece BPE model -> GemmaTokenizer
    train = pack(corpus["train"], tokenizer, seq_len=128)  # fixed-length rows with segment positions
    history = train_model(backbone, train, held_out, steps=600)   # Keras fit: AdamW, warmup + cosine
    save_model("my_griffin", backbone); tokenizer.save("my_tokenizer.model")

This is the recipe of lesson 7 (a Griffin and a same-size Gemma trained on the Python
standard library) and of ``data/make_small_models.py``, which wrote the two small
models the kit ships (``load_small("griffin")``, ``load_small("gemma")``).

How it maps to the papers: Gemma and RecurrentGemma were pre-trained the same way at a
far larger scale: a SentencePiece tokenizer (BPE with byte fallback, digits split,
runs of whitespace as pieces of their own), documents packed into fixed-length
sequences where ``segment_pos`` restarts at 0 at each document start (the attention
mask and Griffin's RG-LRU stop there), next-token cross-entropy, AdamW with a
warmup then cosine learning-rate schedule (De et al. 2024, section 3; Gemma Team 2024).
"""

from __future__ import annotations

import io
import json
import os
import sysconfig
import zlib
from pathlib import Path

import keras
import numpy as np
import sentencepiece

from .models.gemma import GemmaBackbone, GemmaConfig
from .models.griffin import GriffinBackbone, GriffinConfig, griffin_block_types
from .tokenizer import SPACE, GemmaTokenizer
from .tuning.data import TrainingBatches
from .tuning.train import compile_for_training

SKIP = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "site-packages", "dist-packages",
        "__pycache__", "pydoc_data", "encodings"}
FAMILIES = {"griffin": (GriffinConfig, GriffinBackbone), "gemma": (GemmaConfig, GemmaBackbone)}
SHIPPED = {"griffin": "stdlib_small_griffin", "gemma": "stdlib_small_gemma"}   # data/<stem>.json + .safetensors
SHIPPED_TOKENIZER = "stdlib_small_tokenizer.model"
# The recipe of lesson 7 at its default parameters and of the shipped models (data/make_small_models.py).
RECIPE = dict(max_bytes=3_000_000, vocab_size=2048, seq_len=128, width=128, blocks=6, window=32,
              batch_size=8, steps=250, learning_rate=3e-3, warmup=25, evaluate_every=50, held_out_rows=32, seed=0)


# -- 1. the corpus --------------------------------------------------------------------------------
def stdlib_corpus(max_bytes: int = 3_000_000, held_out_share: float = 0.1, root: str | None = None) -> dict:
    """The standard library's ``.py`` sources (no tests, no IDLE), split *by module* into train and held-out.

    A module goes to held-out when the CRC32 of its relative path says so (deterministic, independent of the
    order of the files); the held-out split holds about ``held_out_share`` of ``max_bytes``.
    """
    root = root or sysconfig.get_paths()["stdlib"]
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP and not d.startswith(("test", "config-")))
        files += [os.path.join(folder, n) for n in names if n.endswith(".py") and not n.startswith("test")]
    if not files:
        raise FileNotFoundError(f"no .py files under {root!r}: is this the standard library's folder?")
    crc = {path: zlib.crc32(os.path.relpath(path, root).encode()) for path in files}
    splits, budget = {"train": [], "held_out": []}, {"train": max_bytes * (1 - held_out_share),
                                                     "held_out": max_bytes * held_out_share}
    for path in sorted(files, key=crc.get):                  # a fixed pseudo-random order of modules
        split = "held_out" if crc[path] % 1000 < 1000 * held_out_share else "train"
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if text.strip() and len(text) <= budget[split]:
            splits[split].append(text)
            budget[split] -= len(text)
    return splits


# -- 2. the tokenizer -----------------------------------------------------------------------------
def train_tokenizer(texts, vocab_size: int = 2048, max_lines: int = 40_000) -> GemmaTokenizer:
    """Train a SentencePiece BPE model the way Gemma's was configured, on the first ``max_lines`` code lines.

    Ids as in Gemma: pad 0, eos 1, bos 2, unk 3. No text normalisation and no dummy prefix (code keeps
    its spaces); digits split; unknown characters fall back to UTF-8 bytes; a newline and runs of 4, 8,
    12 and 16 spaces (indentation) are user-defined pieces, cut out whole before BPE.
    """
    lines = [line for text in texts for line in text.split("\n") if line.strip()][:max_lines]
    if not lines:
        raise ValueError("train_tokenizer got no non-empty line of text")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, split_digits=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True, character_coverage=1.0,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", user_defined_symbols=["\n"] + [SPACE * n for n in (4, 8, 12, 16)],
        num_threads=1, minloglevel=2)
    proto = sentencepiece.sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return GemmaTokenizer(proto)


# -- 3. packing -----------------------------------------------------------------------------------
def pack(texts, tokenizer, seq_len: int) -> dict:
    """Documents -> rows of ``seq_len`` tokens: inputs, next-token targets, segment positions and weights.

    Each document is ``<bos> tokens <eos>``; documents follow one another in one stream cut into rows
    of ``seq_len + 1`` (inputs are a row's first ``seq_len``, targets its last ``seq_len``).
    ``segment_pos`` counts positions in the document and restarts at 0 at every ``<bos>`` and at each
    row's first token (the model never sees the row before). A target that starts the next document
    has weight 0: nothing before a ``<bos>`` predicts it.
    """
    stream = np.concatenate([np.asarray([tokenizer.bos_id] + tokenizer.encode(t) + [tokenizer.eos_id], np.int32)
                             for t in texts])                                        # (total,)
    rows = (len(stream) - 1) // seq_len
    if rows < 1:
        raise ValueError(f"pack: {len(stream)} tokens do not fill one row of seq_len + 1 = {seq_len + 1}")
    windows = np.stack([stream[i * seq_len: (i + 1) * seq_len + 1] for i in range(rows)])   # (rows, seq + 1)
    inputs, targets = windows[:, :-1], windows[:, 1:]                                  # (rows, seq) each
    starts = (inputs == tokenizer.bos_id)
    starts[:, 0] = True
    index = np.arange(seq_len)[None, :]                                                # (1, seq)
    last_start = np.maximum.accumulate(np.where(starts, index, 0), axis=1)             # (rows, seq)
    return {"token_ids": inputs, "segment_pos": (index - last_start).astype(np.int32), "targets": targets,
            "weights": (targets != tokenizer.bos_id).astype(np.float32)}


# -- 4. the loss and the training loop ------------------------------------------------------------
class CausalLM(keras.Model):
    """Any backbone as a Keras model ``fit`` can train: ``{"token_ids", "segment_pos"}`` -> logits.

    The loss (``compile_for_training``) is next-token cross-entropy averaged over the tokens whose
    weight is 1: ``targets`` are the inputs shifted by one (``pack``).
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(name=kwargs.pop("name", "causal_lm"), **kwargs)
        self.backbone = backbone

    def call(self, inputs):
        return self.backbone({"token_ids": inputs["token_ids"], "segment_pos": inputs["segment_pos"]})


def _fit_arrays(packed: dict) -> dict:
    """``pack``'s rows as ``{"x": {"token_ids", "segment_pos"}, "y", "sample_weight"}``, the arrays ``fit`` takes."""
    return {"x": {"token_ids": packed["token_ids"], "segment_pos": packed["segment_pos"]},
            "y": packed["targets"], "sample_weight": packed["weights"]}


def train_model(backbone, train: dict, held_out: dict | None = None, steps: int = 600, batch_size: int = 16,
                learning_rate: float = 3e-3, warmup: int = 50, evaluate_every: int = 50, seed: int = 0,
                verbose="auto") -> dict:
    """Train ``backbone`` in place with AdamW, linear warmup then cosine decay to 0; returns its loss history.

    Returns ``{"step": [...], "loss": [...], "held_out_loss": [...]}``, one entry every ``evaluate_every``
    steps: the mean training loss of those steps and the loss on ``held_out`` (all its rows).
    """
    if steps % evaluate_every:
        raise ValueError(f"steps={steps} must be a multiple of evaluate_every={evaluate_every}")
    schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=max(steps - warmup, 1), alpha=0.0,
                                                      warmup_target=learning_rate, warmup_steps=warmup)
    model = compile_for_training(CausalLM(backbone), learning_rate=schedule)
    # tuning's TrainingBatches: batch i of Keras epoch e is step e * evaluate_every + i of a seeded shuffle
    data = TrainingBatches(_fit_arrays(train), batch_size, steps_per_epoch=evaluate_every, seed=seed)
    validation = None
    if held_out is not None:
        rows = _fit_arrays(held_out)
        validation = (rows["x"], rows["y"], rows["sample_weight"])
    fit = model.fit(data, epochs=steps // evaluate_every, shuffle=False, callbacks=[data.epoch_callback],
                    validation_data=validation, validation_batch_size=batch_size, verbose=verbose)
    return {"step": [evaluate_every * (i + 1) for i in range(steps // evaluate_every)],
            "loss": fit.history["loss"], "held_out_loss": fit.history.get("val_loss", [])}


def same_size_pair(vocab_size: int, width: int, blocks: int, window: int, head_dim: int = 32,
                   max_sequence_length: int = 8192):
    """A Griffin (recurrent, recurrent, attention, ...) and an all-global multi-head Gemma of equal width and
    depth; the Gemma's MLP width is chosen so that both have (nearly) the same parameter count."""
    heads = width // head_dim
    griffin = GriffinConfig(vocab_size=vocab_size, width=width, mlp_expanded_width=3 * width, num_heads=heads,
                            lru_width=width, block_types=griffin_block_types(blocks), attention_window_size=window,
                            max_sequence_length=max_sequence_length, name="small_griffin")
    gemma = lambda f: GemmaConfig(vocab_size=vocab_size, hidden_dim=width, num_layers=blocks, num_query_heads=heads,
                                  num_kv_heads=heads, head_dim=head_dim, intermediate_dim=f,
                                  max_sequence_length=max_sequence_length, name="small_gemma")
    f = min(range(16, 8 * width + 1, 16), key=lambda f: abs(gemma(f).num_parameters() - griffin.num_parameters()))
    return griffin, gemma(f)


# -- 5. saving and loading: config JSON + safetensors weights (+ the tokenizer's .model) -------------
def save_model(stem, backbone, dtype: str = "float16", **metadata) -> list:
    """Write ``<stem>.json`` (family, config, ``metadata``) and ``<stem>.safetensors``; returns both paths.

    ``dtype``: "float32", "float16", or "int8": every matrix stored as int8 with one float32 scale per row
    of its last axis (``<path>.int8_scale``, absmax / 127), vectors in float16; a quarter of float32's bytes.
    """
    from safetensors.numpy import save_file

    if dtype not in ("float32", "float16", "int8"):
        raise ValueError(f"save_model: dtype must be 'float32', 'float16' or 'int8', got {dtype!r}")
    family = next(name for name, (_, cls) in FAMILIES.items() if isinstance(backbone, cls))
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for path, variable in backbone.weights_by_path().items():
        value = np.asarray(keras.ops.convert_to_numpy(variable), np.float32)
        if dtype == "int8" and value.ndim >= 2:
            scale = np.maximum(np.abs(value).max(axis=-1, keepdims=True), 1e-12) / 127     # (..., 1)
            tensors[path] = np.round(value / scale).astype(np.int8)
            tensors[path + ".int8_scale"] = scale.astype(np.float32)
        else:
            tensors[path] = value.astype("float16" if dtype == "int8" else dtype)
    save_file(tensors, str(stem) + ".safetensors")
    Path(str(stem) + ".json").write_text(json.dumps({"family": family, "config": backbone.config.to_dict(),
                                                     "dtype": dtype, **metadata}, indent=1) + "\n")
    return [Path(str(stem) + ".json"), Path(str(stem) + ".safetensors")]


def load_model(stem, tokenizer=None):
    """The backbone saved by ``save_model`` (float32 weights), or a ``GemmaModel`` when ``tokenizer`` is given."""
    from safetensors.numpy import load_file

    from .model import GemmaModel

    stem = str(stem).removesuffix(".json").removesuffix(".safetensors")
    meta = json.loads(Path(stem + ".json").read_text())
    if meta.get("family") not in FAMILIES:
        raise ValueError(f"{stem}.json: field 'family' is {meta.get('family')!r}, expected one of {sorted(FAMILIES)}")
    config_class, backbone_class = FAMILIES[meta["family"]]
    backbone = backbone_class(config_class.from_dict(meta["config"]), random_init=False)
    if not backbone.built:
        backbone.build()
    tensors, wanted = load_file(stem + ".safetensors"), backbone.weights_by_path()
    scales = {k.removesuffix(".int8_scale"): tensors.pop(k) for k in list(tensors) if k.endswith(".int8_scale")}
    missing, extra = sorted(set(wanted) - set(tensors)), sorted(set(tensors) - set(wanted))
    if missing or extra:
        raise ValueError(f"{stem}.safetensors does not match its config: missing {missing[:5]}, unexpected {extra[:5]}")
    for path, variable in wanted.items():
        if tuple(tensors[path].shape) != tuple(variable.shape):
            raise ValueError(f"{stem}.safetensors: tensor {path!r} is {tensors[path].shape}, "
                             f"the config wants {tuple(variable.shape)}")
        value = tensors[path].astype(np.float32)
        variable.assign(value * scales[path] if path in scales else value)       # int8 -> float32
    return backbone if tokenizer is None else GemmaModel(backbone, tokenizer, backbone.config, source=stem)


def load_small(family: str = "griffin"):
    """One of the two small models the kit ships (``data/make_small_models.py``), with its tokenizer."""
    from . import data

    if family not in SHIPPED:
        raise KeyError(f"no shipped small model {family!r}; the kit ships {sorted(SHIPPED)}")
    tokenizer = GemmaTokenizer.from_file(data.file(SHIPPED_TOKENIZER))
    return load_model(data.file(SHIPPED[family] + ".json"), tokenizer)


def shipped_metadata(family: str = "griffin") -> dict:
    """What ``data/make_small_models.py`` recorded with a shipped model: recipe, losses, parameter count."""
    from . import data

    return json.loads(data.file(SHIPPED[family] + ".json").read_text())
