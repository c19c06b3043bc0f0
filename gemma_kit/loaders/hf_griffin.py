"""Load a Hugging Face RecurrentGemma folder (transformers' ``RecurrentGemmaForCausalLM``).

The folder is a transformers checkpoint like any other (``config.json`` with ``model_type``
``recurrent_gemma``, ``.safetensors`` weights, ``tokenizer.model``/``tokenizer.json``), but
its tensors are the official Griffin's under other names. We rename them to the official
(Flax) names and reuse the official loader's plan (``griffin.load_weights``), so one table
decides where every weight of a Griffin goes, whichever file it came from:

| transformers (``model.layers.i.``)            | official (``blocks.i.``)                        |
|-----------------------------------------------|-------------------------------------------------|
| ``temporal_block.linear_x.weight`` [out, in]  | ``recurrent_block.linear_x.kernel`` (in, out)   |
| ``temporal_block.conv_1d.weight`` (lru, 1, 4) | ``recurrent_block.conv_1d.w`` (4, lru)          |
| ``temporal_block.rg_lru.recurrent_param``     | ``recurrent_block.rg_lru.a_param``              |
| ``temporal_block.rg_lru.recurrent_gate_*``    | ``recurrent_block.rg_lru.a_gate.w`` / ``.b``    |
| ``temporal_block.q_proj`` ... ``o_proj``      | ``attention_block.proj_q`` ... ``proj_final``   |
| ``mlp_block.gate_proj`` and ``up_proj``       | ``mlp_block.ffw_up.w[0]`` and ``[1]``           |

**The window differs.** For the same ``attention_window_size`` (2,048 in the released
config) a query of the official code sees ``window + 1`` keys (itself and the ``window``
before it); transformers' RecurrentGemma sees ``window`` keys. The weights were trained with
the official code, so we keep its meaning: on sequences longer than the window our logits
follow the official model, not transformers. ``gemma_kit.load(folder,
attention_window_size=window - 1)`` reproduces transformers instead (tests/test_griffin_hf.py
checks both).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..griffin.config import GriffinConfig
from . import Format, register_format
from .griffin import OPTIONS, GriffinCheckpointError, load_weights, weight_plan
from .hf_config import CONFIG_FILE, HuggingFaceFormatError
from .hf_tokenizer import load_hf_tokenizer
from .huggingface import _folder, _model_name, _safe_open, _tensor_files

MODEL_TYPE = "recurrent_gemma"
# transformers' RecurrentGemmaConfig defaults, for fields a config.json leaves out.
DEFAULTS = dict(num_hidden_layers=26, vocab_size=256_000, hidden_size=2560, intermediate_size=3 * 2560,
                num_attention_heads=10, lru_width=None, attention_window_size=2048, conv1d_width=4,
                logits_soft_cap=30.0, block_types=("recurrent", "recurrent", "attention"),
                hidden_activation="gelu_pytorch_tanh", partial_rotary_factor=0.5, rope_theta=10_000.0)

# (transformers name after "model.layers.i.", official name after "blocks.i.", how to convert)
LINEAR = lambda w: w.T  # noqa: E731   nn.Linear [out, in] -> kernel (in, out)
SAME = lambda w: w  # noqa: E731
BLOCK_RENAMES = [
    ("temporal_pre_norm.weight", "temporal_pre_norm.scale", SAME),
    ("channel_pre_norm.weight", "channel_pre_norm.scale", SAME),
    ("mlp_block.down_proj.weight", "mlp_block.ffw_down.kernel", LINEAR),
    ("mlp_block.down_proj.bias", "mlp_block.ffw_down.bias", SAME),
    *[(f"temporal_block.{n}.weight", f"recurrent_block.{n}.kernel", LINEAR) for n in ("linear_x", "linear_y",
                                                                                     "linear_out")],
    *[(f"temporal_block.{n}.bias", f"recurrent_block.{n}.bias", SAME) for n in ("linear_x", "linear_y",
                                                                               "linear_out")],
    ("temporal_block.conv_1d.weight", "recurrent_block.conv_1d.w", lambda w: w[:, 0, :].T),  # (lru, 1, 4) -> (4, lru)
    ("temporal_block.conv_1d.bias", "recurrent_block.conv_1d.b", SAME),
    ("temporal_block.rg_lru.recurrent_param", "recurrent_block.rg_lru.a_param", SAME),
    ("temporal_block.rg_lru.input_gate_weight", "recurrent_block.rg_lru.input_gate.w", SAME),  # (heads, in, out)
    ("temporal_block.rg_lru.input_gate_bias", "recurrent_block.rg_lru.input_gate.b", SAME),
    ("temporal_block.rg_lru.recurrent_gate_weight", "recurrent_block.rg_lru.a_gate.w", SAME),
    ("temporal_block.rg_lru.recurrent_gate_bias", "recurrent_block.rg_lru.a_gate.b", SAME),
    *[(f"temporal_block.{a}_proj.weight", f"attention_block.proj_{a}.kernel", LINEAR) for a in "qkv"],
    ("temporal_block.o_proj.weight", "attention_block.proj_final.kernel", LINEAR),
    ("temporal_block.o_proj.bias", "attention_block.proj_final.bias", SAME),
]


def read_hf_griffin_config(path, **options) -> GriffinConfig:
    """config.json -> GriffinConfig; ``options`` (official names) override, as for the official files."""
    folder = _folder(path)
    where = os.path.join(folder, CONFIG_FILE)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"{folder}: unknown option(s) {unknown} for a RecurrentGemma checkpoint; "
                        f"the options are {sorted(OPTIONS)}")
    with open(where, encoding="utf-8") as f:
        values = {**DEFAULTS, **json.load(f)}
    rope = values.get("rope_parameters") or {}
    checks = {"num_key_value_heads": (values.get("num_key_value_heads", 1), 1),   # Griffin attention is MQA
              "conv1d_width": (values["conv1d_width"], 4),
              "hidden_activation": (values["hidden_activation"], "gelu_pytorch_tanh"),
              "partial_rotary_factor": (rope.get("partial_rotary_factor", values["partial_rotary_factor"]), 0.5),
              "rope_theta": (rope.get("rope_theta", values["rope_theta"]), 10_000.0)}
    for field, (found, supported) in checks.items():
        if found != supported:
            raise HuggingFaceFormatError(f"{where}: {field} is {found!r}; RecurrentGemma (and gemma_kit's "
                                         f"Griffin) uses {supported!r}")
    if values["intermediate_size"] % 2:
        raise HuggingFaceFormatError(f"{where}: intermediate_size {values['intermediate_size']} is odd; "
                                     "transformers' RecurrentGemma uses half of it per GeGLU branch")
    num_layers, pattern = values["num_hidden_layers"], tuple(values["block_types"])
    return GriffinConfig(
        vocab_size=values["vocab_size"], width=values["hidden_size"],
        mlp_expanded_width=values["intermediate_size"] // 2,      # transformers counts both GeGLU branches
        num_heads=values["num_attention_heads"], lru_width=values["lru_width"],
        block_types=tuple(pattern[i % len(pattern)] for i in range(num_layers)),   # the pattern, cycled
        **{"attention_window_size": values["attention_window_size"], "logits_soft_cap": values["logits_soft_cap"],
           "embeddings_scale_by_sqrt_dim": True, **options},
        name=_model_name(folder))


def hf_name_of(official: str) -> str:
    """The transformers tensor an official name comes from (for error messages)."""
    if official.startswith("blocks."):
        _, i, rest = official.split(".", 2)
        mlp = {"mlp_block.ffw_up.w": "mlp_block.gate_proj.weight", "mlp_block.ffw_up.b": "mlp_block.gate_proj.bias"}
        theirs = mlp.get(rest) or next((h for h, o, _ in BLOCK_RENAMES if o == rest), rest)
        return f"model.layers.{i}.{theirs}"
    return {"embedder.input_embedding": "model.embed_tokens.weight", "final_norm.scale": "model.final_norm.weight"
            }.get(official, official)


def _official_tensors(folder, config):
    """{official name: (None, read)} for the folder's tensors, renamed and converted when read."""
    located = _tensor_files(folder)
    prefix = "model."
    if prefix + "embed_tokens.weight" not in located:
        raise GriffinCheckpointError(f"{folder}: no tensor 'model.embed_tokens.weight' in its .safetensors files")

    def reader(name, convert):
        def read():
            with _safe_open(located[name]) as f:
                return convert(f.get_tensor(name).astype(np.float32))
        return read

    last = {}                                  # the most recently stacked pair: its read function and value

    def stacked(read_first, read_second, index=()):
        def read():
            if last.get("key") is not read:
                last.update(key=read, value=np.stack([read_first(), read_second()])[index])
            return last["value"]
        return read

    tensors, used = {}, set()

    def take(hf_name, official, convert):
        if hf_name in located:
            tensors[official] = (None, reader(hf_name, convert))   # griffin.load_weights checks shapes
            used.add(hf_name)
    take(prefix + "embed_tokens.weight", "embedder.input_embedding", SAME)
    take(prefix + "final_norm.weight", "final_norm.scale", SAME)
    if "lm_head.weight" in located:            # a tied copy of the embedding, when saved at all
        with _safe_open(located["lm_head.weight"]) as f, _safe_open(located[prefix + "embed_tokens.weight"]) as g:
            if not np.array_equal(f.get_tensor("lm_head.weight"), g.get_tensor(prefix + "embed_tokens.weight")):
                raise GriffinCheckpointError(f"{folder}: lm_head.weight differs from model.embed_tokens.weight; "
                                             "RecurrentGemma ties its output layer to the embedding")
        used.add("lm_head.weight")
    for i in range(len(config.block_types)):
        theirs, ours = f"{prefix}layers.{i}.", f"blocks.{i}."
        for hf_name, official, convert in BLOCK_RENAMES:
            take(theirs + hf_name, ours + official, convert)
        gate, up = theirs + "mlp_block.gate_proj.", theirs + "mlp_block.up_proj."
        if all(n in located for n in (gate + "weight", up + "weight", gate + "bias", up + "bias")):
            # official ffw_up: w (2, width, expanded) and b (2, 1, 1, expanded); [0] is the GeLU branch.
            # The weight plan takes [0] and then [1]: ``stacked`` reads the pair once for both.
            tensors[ours + "mlp_block.ffw_up.w"] = (None, stacked(reader(gate + "weight", LINEAR),
                                                                  reader(up + "weight", LINEAR)))
            tensors[ours + "mlp_block.ffw_up.b"] = (None, stacked(reader(gate + "bias", SAME),
                                                                  reader(up + "bias", SAME), (slice(None), None, None)))
            used.update(n + p for n in (gate, up) for p in ("weight", "bias"))
    unexpected = sorted(set(located) - used)
    if unexpected:
        raise GriffinCheckpointError(f"{folder}: {len(unexpected)} tensor(s) a RecurrentGemma with "
                                     f"{len(config.block_types)} layers has no place for, e.g. {unexpected[:5]}")
    return tensors


def load_hf_griffin(path, dtype=None, **options):
    from ..griffin.backbone import GriffinBackbone

    folder = _folder(path)
    config = read_hf_griffin_config(folder, **options)
    tensors = _official_tensors(folder, config)
    backbone = GriffinBackbone(config, dtype=dtype, random_init=False)
    missing = [hf_name_of(name) for _, name, _ in weight_plan(backbone) if name not in tensors]
    if missing:
        raise GriffinCheckpointError(f"{folder}: tensor {missing[0]!r} is missing"
                                     + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    load_weights(backbone, tensors, folder)
    return config, backbone, load_hf_tokenizer(folder)


def is_hf_griffin(path) -> bool:
    """A folder (or its config.json) whose config.json says ``"model_type": "recurrent_gemma"``."""
    config = os.path.join(_folder(path), CONFIG_FILE)
    if not os.path.isfile(config):
        return False
    try:
        with open(config, encoding="utf-8") as f:
            return json.load(f).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False          # the Gemma loader reports what is wrong with the file


register_format(Format("huggingface_recurrentgemma", is_hf_griffin, load_hf_griffin, read_hf_griffin_config),
                before="huggingface")
