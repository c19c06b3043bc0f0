"""Export LoRA weights as a PEFT adapter folder (Hugging Face ``peft``).

    export_peft(model, "my-adapter")
    # my-adapter/adapter_config.json        peft_type LORA, r, lora_alpha, target_modules (q_proj, v_proj, ...)
    # my-adapter/adapter_model.safetensors  base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight ...

    # then, in transformers:
    base = AutoModelForCausalLM.from_pretrained(folder_from_model_save_hf)
    tuned = PeftModel.from_pretrained(base, "my-adapter")

The two conventions compute the same update with transposed matrices. Keras:
``x @ W + (alpha / r) * (x @ A) @ B`` with ``A`` (in, r) and ``B`` (r, out).
PEFT's ``torch.nn.Linear`` form: ``W x + (lora_alpha / r) * B' A' x`` with
``lora_A.weight`` (r, in) = ``A.T`` and ``lora_B.weight`` (out, r) = ``B.T``.
Module names come from the transformers export's own map (export/huggingface.py),
so the adapter fits the folder ``model.save_hf`` writes.

Gemma 4's experts (``experts`` target) are not ``nn.Linear`` modules in transformers
either, but two 3-D parameters of ``layers.N.experts``: ``gate_up_proj`` (E, 2F, H),
gate and up fused, and ``down_proj`` (E, H, F). PEFT adapts such parameters with
``target_parameters`` (a recent PEFT feature: checked with peft 0.21): one ``lora_A.weight``
(E * r, in) and ``lora_B.weight`` (out, r * E), expert-major in A and rank-major in
B, a delta per expert. Our separate gate and up pairs become one pair of rank 2r on
the fused tensor (A's rows stacked, B block-diagonal), so ``rank_pattern``
/``alpha_pattern`` give ``gate_up_proj`` rank 2r and alpha 2 alpha (the same scale
alpha / r). PEFT wraps the two parameters of one module in nested wrappers, the first
parameter (``gate_up_proj``) innermost: its tensors are named ``experts.base_layer.lora_A``,
``down_proj``'s ``experts.lora_A``. (PEFT warns that the rank/alpha pattern "did not
match any targeted module": it checks modules only, and applies the pattern to parameters anyway.)
"""

from __future__ import annotations

import json
import os

import numpy as np
from keras import ops

from ..models.gemma4.moe import MixtureOfExperts
from .lora import backbone_of, lora_layers, lora_state, lora_variables


def _module_names(backbone) -> dict:
    """{our layer path ``block_0/attention/query``: transformers module ``model.layers.0.self_attn.q_proj``}."""
    from ..loaders.hf_gemma import tensor_names
    names = {}
    for ours, theirs in tensor_names(backbone.config).items():
        if ours.endswith(".kernel") and isinstance(theirs, str):     # "block_0/attention.query.kernel"
            names[ours[:-len(".kernel")].replace(".", "/")] = "model." + theirs[:-len(".weight")]
        elif ours.endswith("/experts.down"):                          # Gemma 4: "layers.0.experts.down_proj"
            names[ours[:-len(".down")]] = "model." + theirs.rsplit(".", 1)[0]
    return names


def _expert_tensors(layer, module: str) -> dict:
    """PEFT tensors for one ``MixtureOfExperts``' LoRA (see the module docstring for the layout)."""
    a_gate, b_gate, a_up, b_up, a_down, b_down = (ops.convert_to_numpy(v) for v in lora_variables(layer))
    experts, rank, width = b_gate.shape                                 # B: (experts, rank, expert_dim)
    # gate_up_proj (experts, 2F, hidden): rank 2r, A = [A_gate; A_up], B = [[B_gate, 0], [0, B_up]].
    a = np.concatenate([a_gate, a_up], axis=2).transpose(0, 2, 1)       # (experts, 2r, hidden)
    b = np.zeros((2 * width, 2 * rank, experts), np.float32)            # (out, rank, experts): rank-major
    b[:width, :rank] = b_gate.transpose(2, 1, 0)
    b[width:, rank:] = b_up.transpose(2, 1, 0)
    fused = f"base_model.model.{module}.base_layer"
    tensors = {f"{fused}.lora_A.weight": a.reshape(experts * 2 * rank, -1),           # (E * 2r, hidden)
               f"{fused}.lora_B.weight": b.reshape(2 * width, -1)}                    # (2F, 2r * E)
    # down_proj (experts, hidden, F): rank r.
    tensors[f"base_model.model.{module}.lora_A.weight"] = a_down.transpose(0, 2, 1).reshape(experts * rank, -1)
    tensors[f"base_model.model.{module}.lora_B.weight"] = b_down.transpose(2, 1, 0).reshape(b_down.shape[2], -1)
    return {name: np.ascontiguousarray(value, np.float32) for name, value in tensors.items()}


def export_peft(model, folder, base_model_name_or_path: str | None = None) -> str:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` to ``folder``; returns it.

    Gemma models only, Gemma 4 included (transformers has no module names for our Griffin export).
    """
    from safetensors.numpy import save_file
    from ..models.gemma.config import GemmaConfig

    backbone = backbone_of(model)
    state = lora_state(backbone)
    if state is None:
        raise ValueError("This model has no LoRA weights to export: call enable_lora(model, ...) first")
    if not isinstance(backbone.config, GemmaConfig):                           # Gemma4Config is one too
        raise ValueError(f"PEFT export supports Gemma models (the ones save_hf writes), not "
                         f"{type(backbone).__name__}; use save_adapter for this model")
    modules = _module_names(backbone)
    tensors, target_modules, extra = {}, set(), {}
    for layer in lora_layers(backbone):
        ours = layer.path.split("/", 1)[1]                                     # "block_0/attention/query"
        module = modules[ours]
        if isinstance(layer, MixtureOfExperts):                                # Gemma 4's experts: 3-D parameters
            tensors.update(_expert_tensors(layer, module))
            extra = {"target_parameters": ["experts.gate_up_proj", "experts.down_proj"],
                     "rank_pattern": {"gate_up_proj": 2 * state["rank"]},
                     "alpha_pattern": {"gate_up_proj": 2 * state["alpha"]}}
            continue
        target_modules.add(module.rsplit(".", 1)[1])
        a = ops.convert_to_numpy(layer.lora_kernel_a)                          # (in, r)
        b = ops.convert_to_numpy(layer.lora_kernel_b)                          # (r, out)
        tensors[f"base_model.model.{module}.lora_A.weight"] = np.ascontiguousarray(a.T, np.float32)  # (r, in)
        tensors[f"base_model.model.{module}.lora_B.weight"] = np.ascontiguousarray(b.T, np.float32)  # (out, r)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": state["rank"], "lora_alpha": state["alpha"],
        "target_modules": sorted(target_modules), "lora_dropout": 0.0, "bias": "none",
        "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "init_lora_weights": True,
        "inference_mode": True, "modules_to_save": None,
        "base_model_name_or_path": base_model_name_or_path or getattr(model, "source", None) or backbone.name,
        **extra,
    }
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "adapter_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return folder
