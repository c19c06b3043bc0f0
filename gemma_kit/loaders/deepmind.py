"""Load RecurrentGemma checkpoints in DeepMind's two official formats (Kaggle model ``google/recurrentgemma``).

- **PyTorch** (``2b.pt``, with ``tokenizer.model`` beside it: Kaggle's ``pyTorch`` variation, which
  ``kaggle://google/recurrentgemma/pyTorch/2b`` downloads; the folder may be given for the file):
  ``torch.save`` of ``recurrentgemma.torch.Griffin().state_dict()``, names like
  ``blocks.0.recurrent_block.linear_x.weight``. We read it with ``torch.load(weights_only=True)``
  (tensors only: no pickled code runs) and memory-mapped, so a 2B file is not copied into RAM twice.
- **Flax** (a folder ``2b/``, with ``tokenizer.model`` beside it): an ``orbax.checkpoint``
  ``PyTreeCheckpointer`` directory of nested dicts, ``{"blocks.0": {"recurrent_block": {"linear_x":
  {"kernel", "bias"}}}}``, which ``recurrentgemma.jax.load_parameters`` restores. Reading it needs
  ``orbax-checkpoint``.

Both are turned into one flat naming, Flax's joined with dots: a PyTorch ``...weight`` (an
``nn.Linear``, stored ``[out, in]``) is the Flax ``...kernel`` (``[in, out]``) transposed, the inverse of
``recurrentgemma.conversion.flax_params_to_pytorch_state_dict``.

The config comes from the tensor shapes, as ``GriffinConfig.from_flax_params_or_variables`` does:
``embedder.input_embedding`` gives vocab and width, ``ffw_up.w`` the MLP width, a block with
``rg_lru`` is recurrent (``a_gate.w``: (num_heads, lru_width / num_heads, ...)) and one with
``attention_block`` attends (``proj_k``: head_dim). The three hyper-parameters shapes cannot tell
default to the official values and are overridden by keyword arguments with the official names:
``gemma_kit.load(path, attention_window_size=..., logits_soft_cap=..., embeddings_scale_by_sqrt_dim=...)``.
(The official ``from_torch_params`` reads ``proj_k.weight.shape[1]``, which is the *width* of a torch
``[out, in]`` weight: it infers one head when the last block is an attention block. We read head_dim.)
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from ..models.griffin.config import ATTENTION, RECURRENT, GriffinConfig
from .registry import Format, folder_of

# The hyper-parameters that tensor shapes cannot tell, with the official RecurrentGemma values.
OPTIONS = {"attention_window_size": 2048, "logits_soft_cap": 30.0, "embeddings_scale_by_sqrt_dim": True}
ORBAX_MARKERS = ("_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt", "checkpoint")
GRIFFIN_NAMES = (b"rg_lru", b"recurrent_block", b"attention_block")


class GriffinCheckpointError(ValueError):
    """A RecurrentGemma checkpoint we cannot read; the message names the file and the tensor."""


def check_options(options, where) -> None:
    """Loading options must be among ``OPTIONS`` (a TypeError names the others)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"{where}: unknown option(s) {unknown} for a RecurrentGemma checkpoint; "
                        f"the options are {sorted(OPTIONS)}")


# -- the two formats as {flax name: (shape, read)} --------------------------------------------------------
def _read_torch(path):
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"{path}: reading a RecurrentGemma .pt checkpoint needs PyTorch: "
                          "pip install torch") from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:                                   # an old (non-zip) file cannot be memory-mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise GriffinCheckpointError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    tensors = {}
    for key, tensor in state.items():
        name = key[len("params."):] if key.startswith("params.") else key
        transpose = name.endswith(".weight") and tensor.ndim == 2    # nn.Linear [out, in] -> kernel [in, out]
        if name.endswith(".weight"):
            name = name[:-len("weight")] + "kernel"
        shape = tuple(tensor.shape)[::-1] if transpose else tuple(tensor.shape)

        def read(tensor=tensor, transpose=transpose):
            value = tensor.detach().to(torch.float32).numpy() if tensor.is_floating_point() else tensor.numpy()
            return value.T if transpose else value
        tensors[name] = (shape, read)
    return tensors


def _orbax_folder(path):
    """The orbax checkpoint folder for ``path``: itself, or its only checkpoint sub-folder (Kaggle's layout)."""
    if not os.path.isdir(path):
        return None
    if any(os.path.exists(os.path.join(path, m)) for m in ORBAX_MARKERS):
        return path
    inner = [os.path.join(path, d) for d in sorted(os.listdir(path)) if os.path.isdir(os.path.join(path, d))
             and any(os.path.exists(os.path.join(path, d, m)) for m in ORBAX_MARKERS)]
    return inner[0] if len(inner) == 1 else None


def _flatten(tree, prefix=""):
    """{"blocks.0": {"rg_lru": {"a_param": x}}} -> {"blocks.0.rg_lru.a_param": x}; a top "params" is unwrapped."""
    while prefix == "" and isinstance(tree, dict) and set(tree) == {"params"}:
        tree = tree["params"]
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _orbax():
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:
        raise ImportError("Reading a RecurrentGemma Flax checkpoint needs orbax: "
                          "pip install orbax-checkpoint") from error
    return ocp


def _flax_metadata(folder):
    """The checkpoint's tree with an ArrayMetadata (shape, dtype) at each leaf: no weight is read."""
    ocp = _orbax()
    meta = ocp.PyTreeCheckpointer().metadata(folder)
    meta = getattr(meta, "item_metadata", meta)            # orbax >= 0.11 wraps the tree
    return getattr(meta, "tree", meta)


def _read_flax(folder):
    ocp = _orbax()
    meta = _flax_metadata(folder)

    def as_numpy(tree):                                    # restore every leaf as a NumPy array, on the host
        return {k: as_numpy(v) for k, v in tree.items()} if isinstance(tree, dict) else \
            ocp.RestoreArgs(restore_type=np.ndarray)
    restored = {}

    def read(name):
        if not restored:
            restored.update(_flatten(ocp.PyTreeCheckpointer().restore(folder, restore_args=as_numpy(meta))))
        return np.asarray(restored[name])
    return {name: (tuple(leaf.shape), lambda name=name: read(name)) for name, leaf in _flatten(meta).items()}


# -- shapes -> GriffinConfig --------------------------------------------------------------------------------
def config_from_shapes(shapes, where, name="recurrent_gemma", **options) -> GriffinConfig:
    """The config of a checkpoint from ``{flax name: shape}``, with keyword overrides (official names)."""
    check_options(options, where)

    def shape(tensor):
        if tensor not in shapes:
            raise GriffinCheckpointError(f"{where}: missing tensor {tensor!r} (not a RecurrentGemma checkpoint?)")
        return shapes[tensor]
    vocab_size, width = shape("embedder.input_embedding")
    mlp_expanded_width = shape("blocks.0.mlp_block.ffw_up.w")[-1]
    indices = {int(n.split(".")[1]) for n in shapes if n.startswith("blocks.")}
    if indices != set(range(len(indices))):
        raise GriffinCheckpointError(f"{where}: block numbers {sorted(indices)} are not 0..{len(indices) - 1}")
    block_types, heads, lru_widths = [], {}, set()
    for i in range(len(indices)):
        if f"blocks.{i}.recurrent_block.rg_lru.a_gate.w" in shapes:
            num_heads, block_width, _ = shapes[f"blocks.{i}.recurrent_block.rg_lru.a_gate.w"]
            block_types.append(RECURRENT)
            lru_widths.add(num_heads * block_width)
        elif f"blocks.{i}.attention_block.proj_k.kernel" in shapes:
            num_heads = width // shapes[f"blocks.{i}.attention_block.proj_k.kernel"][1]
            block_types.append(ATTENTION)
        else:
            found = sorted(n for n in shapes if n.startswith(f"blocks.{i}."))
            raise GriffinCheckpointError(f"{where}: blocks.{i} is neither a recurrent block (rg_lru) nor an "
                                         f"attention block (proj_k); it has {found[:6]}")
        heads.setdefault(num_heads, []).append(i)
    if len(heads) > 1 or len(lru_widths) > 1:
        raise GriffinCheckpointError(f"{where}: blocks disagree on num_heads {heads} or lru_width {sorted(lru_widths)}")
    return GriffinConfig(vocab_size=vocab_size, width=width, mlp_expanded_width=mlp_expanded_width,
                         num_heads=next(iter(heads)), lru_width=next(iter(lru_widths), width),
                         block_types=tuple(block_types), **{**OPTIONS, **options}, name=name)


# -- official names -> Keras variables ----------------------------------------------------------------------
def weight_plan(backbone):
    """``(keras variable, official name, what to take from that tensor)`` for every weight."""
    whole = lambda value: value  # noqa: E731
    plan = [(backbone.token_embedding.embeddings, "embedder.input_embedding", whole),
            (backbone.final_norm.scale, "final_norm.scale", whole)]
    for i, block in enumerate(backbone.blocks):
        p = f"blocks.{i}."
        mlp = block.mlp_block
        plan += [(block.temporal_pre_norm.scale, p + "temporal_pre_norm.scale", whole),
                 (block.channel_pre_norm.scale, p + "channel_pre_norm.scale", whole),
                 (mlp.gate.kernel, p + "mlp_block.ffw_up.w", lambda w: w[0]),     # (2, width, expanded): gate, up
                 (mlp.up.kernel, p + "mlp_block.ffw_up.w", lambda w: w[1]),
                 (mlp.gate.bias, p + "mlp_block.ffw_up.b", lambda b: b[0, 0, 0]),  # (2, 1, 1, expanded)
                 (mlp.up.bias, p + "mlp_block.ffw_up.b", lambda b: b[1, 0, 0]),
                 (mlp.down.kernel, p + "mlp_block.ffw_down.kernel", whole),
                 (mlp.down.bias, p + "mlp_block.ffw_down.bias", whole)]
        if not block.attends:
            r, q = block.recurrent_block, p + "recurrent_block."
            for dense in (r.linear_x, r.linear_y, r.linear_out):
                plan += [(dense.kernel, f"{q}{dense.name}.kernel", whole), (dense.bias, f"{q}{dense.name}.bias", whole)]
            plan += [(r.conv_1d.w, q + "conv_1d.w", whole), (r.conv_1d.b, q + "conv_1d.b", whole),
                     (r.rg_lru.a_param, q + "rg_lru.a_param", whole)]
            for gate in (r.rg_lru.input_gate, r.rg_lru.a_gate):
                plan += [(gate.w, f"{q}rg_lru.{gate.name}.w", whole), (gate.b, f"{q}rg_lru.{gate.name}.b", whole)]
        else:
            a, q = block.attention_block, p + "attention_block."
            plan += [(dense.kernel, f"{q}{dense.name}.kernel", whole) for dense in (a.proj_q, a.proj_k, a.proj_v)]
            plan += [(a.proj_final.kernel, q + "proj_final.kernel", whole),
                     (a.proj_final.bias, q + "proj_final.bias", whole)]
    return plan


def load_weights(backbone, tensors, where) -> None:
    """Copy ``{official name: (shape, read)}`` into ``backbone``; every tensor must be used exactly as planned."""
    used = set()
    for variable, name, take in weight_plan(backbone):
        if name not in tensors:
            raise GriffinCheckpointError(f"{where}: missing tensor {name!r}")
        value = np.asarray(take(tensors[name][1]()))
        if value.shape != tuple(variable.shape):
            raise GriffinCheckpointError(f"{where}: tensor {name!r} gives shape {value.shape}, "
                                         f"expected {tuple(variable.shape)} for {variable.path}")
        variable.assign(value.astype(np.float32) if value.dtype != np.float32 else value)
        used.add(name)
    unexpected = sorted(set(tensors) - used)
    if unexpected:
        raise GriffinCheckpointError(f"{where}: {len(unexpected)} tensor(s) this model has no place for, "
                                     f"e.g. {unexpected[:5]}")


# -- the two formats ----------------------------------------------------------------------------------------
def _tokenizer_near(path):
    from ..tokenizer import GemmaTokenizer
    from .hf_tokenizer import NoTokenizer
    folder = folder_of(path)
    for candidate in (folder, os.path.dirname(os.path.abspath(folder))):
        if os.path.isfile(os.path.join(candidate, "tokenizer.model")):
            return GemmaTokenizer.from_file(os.path.join(candidate, "tokenizer.model"))
    return NoTokenizer(folder)


def _model_name(path):
    """``.../2b.pt`` or a Flax folder ``.../2b`` -> ``"recurrentgemma_2b"``."""
    if os.path.isdir(path):
        path = _orbax_folder(path) or path
    return "recurrentgemma_" + os.path.splitext(os.path.basename(os.path.normpath(path)))[0]


def _build(path, tensors, dtype, options):
    from ..models.griffin.backbone import GriffinBackbone
    config = config_from_shapes({n: s for n, (s, _) in tensors.items()}, path, name=_model_name(path), **options)
    backbone = GriffinBackbone(config, dtype=dtype, random_init=False)
    load_weights(backbone, tensors, path)
    return config, backbone, _tokenizer_near(path)


def _pt_file(path):
    """``path`` if it is a file; for a folder, the only ``.pt`` file in it (Kaggle's download), else None."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = [f for f in sorted(os.listdir(path)) if f.endswith(".pt") and os.path.isfile(os.path.join(path, f))]
        return os.path.join(path, files[0]) if len(files) == 1 else None
    return path if os.path.isfile(path) else None


def is_recurrentgemma_pt(path) -> bool:
    """A torch zip archive whose pickle names Griffin's layers, or a folder holding exactly one."""
    path = _pt_file(path)
    if path is None or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        return bool(pickles) and any(key in archive.read(pickles[0]) for key in GRIFFIN_NAMES)


def load_recurrentgemma_pt(path, dtype=None, **options):
    path = _pt_file(path)
    return _build(path, _read_torch(path), dtype, options)


def read_recurrentgemma_pt_config(path, **options):
    path = _pt_file(path)
    return config_from_shapes({n: s for n, (s, _) in _read_torch(path).items()}, path, name=_model_name(path),
                              **options)


def is_recurrentgemma_flax(path) -> bool:
    """An orbax checkpoint folder (or a folder holding one) whose metadata names Griffin's layers."""
    folder = _orbax_folder(os.fspath(path))
    if folder is None:
        return False
    for marker in ("_METADATA", "checkpoint"):
        file = os.path.join(folder, marker)
        if os.path.isfile(file):
            with open(file, "rb") as f:
                if any(key in f.read(1 << 24) for key in GRIFFIN_NAMES):
                    return True
    return False


def load_recurrentgemma_flax(path, dtype=None, **options):
    return _build(path, _read_flax(_orbax_folder(path)), dtype, options)


def read_recurrentgemma_flax_config(path, **options):
    shapes = {n: tuple(leaf.shape) for n, leaf in _flatten(_flax_metadata(_orbax_folder(path))).items()}
    return config_from_shapes(shapes, path, name=_model_name(path), **options)


PT_FORMAT = Format("recurrentgemma_pt", is_recurrentgemma_pt, load_recurrentgemma_pt, read_recurrentgemma_pt_config)
FLAX_FORMAT = Format("recurrentgemma_flax", is_recurrentgemma_flax, load_recurrentgemma_flax,
                     read_recurrentgemma_flax_config)
