"""RecurrentGemma's weights in a Hugging Face folder (transformers' ``RecurrentGemmaForCausalLM``).

The folder is a transformers checkpoint like any other (``config.json`` with ``model_type``
``recurrent_gemma``, read by ``hf_config.py``; ``.safetensors`` weights; ``tokenizer.model``/
``tokenizer.json``), loaded by the Hugging Face format (``huggingface.py``), but its tensors
are the official Griffin's under other names. We rename them to the official (Flax) names
and reuse the official loader's plan (``deepmind.load_weights``), so one table decides where
every weight of a Griffin goes, whichever file it came from:

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

import numpy as np

from .deepmind import GriffinCheckpointError, load_weights, weight_plan
from .hf_files import safe_open, tensor_files

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


def hf_name_of(official: str) -> str:
    """The transformers tensor an official name comes from (for error messages)."""
    if official.startswith("blocks."):
        _, i, rest = official.split(".", 2)
        mlp = {"mlp_block.ffw_up.w": "mlp_block.gate_proj.weight", "mlp_block.ffw_up.b": "mlp_block.gate_proj.bias"}
        theirs = mlp.get(rest) or next((h for h, o, _ in BLOCK_RENAMES if o == rest), rest)
        return f"model.layers.{i}.{theirs}"
    return {"embedder.input_embedding": "model.embed_tokens.weight", "final_norm.scale": "model.final_norm.weight"
            }.get(official, official)


def official_tensors(folder, config) -> dict:
    """{official name: (None, read)} for the folder's tensors, renamed and converted when read."""
    located = tensor_files(folder)
    prefix = "model."
    if prefix + "embed_tokens.weight" not in located:
        raise GriffinCheckpointError(f"{folder}: no tensor 'model.embed_tokens.weight' in its .safetensors files")

    def reader(name, convert):
        def read():
            with safe_open(located[name]) as f:
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
            tensors[official] = (None, reader(hf_name, convert))   # deepmind.load_weights checks shapes
            used.add(hf_name)
    take(prefix + "embed_tokens.weight", "embedder.input_embedding", SAME)
    take(prefix + "final_norm.weight", "final_norm.scale", SAME)
    if "lm_head.weight" in located:            # a tied copy of the embedding, when saved at all
        with safe_open(located["lm_head.weight"]) as f, safe_open(located[prefix + "embed_tokens.weight"]) as g:
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


def load_hf_griffin_weights(backbone, folder, tensors) -> None:
    """Copy ``official_tensors(folder, ...)`` into ``backbone``; a missing tensor is named as transformers names it."""
    missing = [hf_name_of(name) for _, name, _ in weight_plan(backbone) if name not in tensors]
    if missing:
        raise GriffinCheckpointError(f"{folder}: tensor {missing[0]!r} is missing"
                                     + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    load_weights(backbone, tensors, folder)
