"""Tiny random Gemma 4 models, one per feature, written by transformers (the oracle) for the tests.

| variant    | like    | what it covers                                                              |
|------------|---------|-----------------------------------------------------------------------------|
| ``e2b``    | E2B/E4B | per-layer embeddings, KV sharing (last 3 of 7 layers), double-wide MLP      |
| ``moe``    | 26B-A4B | mixture of experts (4 experts, top 2), keys = values, one global KV head     |
| ``dense``  | 31B     | keys = values with one global KV head, 5:1 layers, GQA on local layers       |

Every norm weight and ``layer_scalar`` is drawn at random too, so no path is an identity.
"""

import os

import numpy as np

VOCAB = 320
WINDOW = 8

VARIANTS = {
    "e2b": dict(num_hidden_layers=7, num_key_value_heads=1, hidden_size_per_layer_input=8,
                vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=3, use_double_wide_mlp=True,
                layer_types=["sliding_attention"] * 3 + ["full_attention"] + ["sliding_attention"] * 2
                + ["full_attention"]),
    "moe": dict(num_hidden_layers=6, num_key_value_heads=2, attention_k_eq_v=True, num_global_key_value_heads=1,
                enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=24),
    "dense": dict(num_hidden_layers=6, num_key_value_heads=2, attention_k_eq_v=True, num_global_key_value_heads=1),
}
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_attention_heads=4, head_dim=8,
              global_head_dim=16, sliding_window=WINDOW, hidden_size_per_layer_input=0,
              final_logit_softcapping=30.0, max_position_embeddings=512,
              rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                               "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                                  "rope_theta": 1_000_000.0}})


def hf_config(variant):
    import transformers

    values = {**COMMON, **VARIANTS[variant]}
    if "layer_types" not in values:
        values["layer_types"] = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                                 for i in range(values["num_hidden_layers"])]
    return transformers.Gemma4TextConfig(**values, attn_implementation="eager")


def build_hf(variant, seed=0):
    """A ``Gemma4ForCausalLM`` with random weights, norms and layer scalars."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.Gemma4ForCausalLM(hf_config(variant)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or "scale" in name:
                parameter.add_(torch.randn_like(parameter) * 0.2)
            else:
                parameter.normal_(0.0, 0.15)
        for name, buffer in model.named_buffers():
            if name.endswith("layer_scalar"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
    return model


def save_hf(folder, variant, seed=0):
    """Write ``variant`` with ``save_pretrained`` plus a tiny SentencePiece tokenizer; returns the model."""
    from tiny_gguf import tiny_tokenizer

    model = build_hf(variant, seed)
    model.save_pretrained(folder)
    tiny_tokenizer(add_space_prefix=False).save(os.path.join(folder, "tokenizer.model"))
    return model


def hf_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor(np.atleast_2d(ids))).logits.float().numpy()
