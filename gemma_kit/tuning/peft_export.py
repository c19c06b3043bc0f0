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
"""

from __future__ import annotations

import json
import os

import numpy as np
from keras import ops

from .lora import backbone_of, lora_layers, lora_state


def _module_names(backbone) -> dict:
    """{our Dense layer path ``block_0/attention/query``: transformers module ``model.layers.0.self_attn.q_proj``}."""
    from ..loaders.hf_gemma import tensor_names
    names = {}
    for ours, theirs in tensor_names(backbone.config).items():
        if ours.endswith(".kernel") and isinstance(theirs, str):     # "block_0/attention.query.kernel"
            names[ours[:-len(".kernel")].replace(".", "/")] = "model." + theirs[:-len(".weight")]
    return names


def export_peft(model, folder, base_model_name_or_path: str | None = None) -> str:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` to ``folder``; returns it.

    Gemma models only (transformers has no module names for our Griffin export).
    """
    from safetensors.numpy import save_file
    from ..models.gemma.backbone import GemmaBackbone

    backbone = backbone_of(model)
    state = lora_state(backbone)
    if state is None:
        raise ValueError("This model has no LoRA weights to export: call enable_lora(model, ...) first")
    if not isinstance(backbone, GemmaBackbone):
        raise ValueError(f"PEFT export supports Gemma models (the ones save_hf writes), not "
                         f"{type(backbone).__name__}; use save_adapter for this model")
    modules = _module_names(backbone)
    tensors, target_modules = {}, set()
    for layer in lora_layers(backbone):
        ours = layer.path.split("/", 1)[1]                                     # "block_0/attention/query"
        module = modules[ours]
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
    }
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "adapter_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return folder
