"""Gemma 4 against transformers, on tiny random models covering every feature (``gemma4_tiny.py``).

Logits within 1e-4 and the same greedy tokens, on each Keras backend; the cache (sliding rings,
global slots, borrowed keys and values) gives what the full forward pass gives, chunk by chunk;
its bytes are what the KV sharing predicts; a saved folder reloads in transformers.
"""

import keras
import numpy as np
import pytest
import torch
from keras import ops

import gemma_kit
from gemma_kit.models.gemma4 import Gemma4Backbone
from gemma_kit.nn import cache_bytes
from gemma4_tiny import VARIANTS, VOCAB, WINDOW, hf_logits, save_hf

IDS = [2] + np.random.default_rng(0).integers(4, VOCAB, size=29).tolist()    # 30 tokens, window 8


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{variant: (folder, transformers model)}."""
    out = {}
    for i, variant in enumerate(VARIANTS):
        folder = str(tmp_path_factory.mktemp(variant))
        out[variant] = folder, save_hf(folder, variant, seed=i)
    return out


@pytest.fixture(scope="module")
def ours(saved):
    """{variant: our GemmaModel}, each loaded once from its transformers folder."""
    return {variant: gemma_kit.load(folder) for variant, (folder, _) in saved.items()}


def quick_logits(model, ids):
    """Compiled on JAX; eager elsewhere (tracing a TensorFlow graph costs more than running a tiny model)."""
    if keras.config.backend() == "jax":
        return model.logits(ids)[0]
    return np.asarray(ops.convert_to_numpy(model.backbone(np.asarray([ids], np.int32))))[0]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_match_transformers(saved, ours, variant):
    theirs, ours = saved[variant][1], ours[variant]
    assert isinstance(ours.backbone, Gemma4Backbone)
    error = np.abs(quick_logits(ours, IDS) - hf_logits(theirs, IDS)[0]).max()
    print(f"\n{variant}: max |logits - transformers| = {error:.2e}")
    assert error < 1e-4


# Generation compiles a prefill and a decode step per model: every variant on JAX, the richest one
# (PLE, KV sharing, double-wide MLP) on TensorFlow and PyTorch, where compiling costs most.
@pytest.mark.parametrize("variant", list(VARIANTS) if keras.config.backend() == "jax" else ["e2b"])
def test_greedy_tokens_match_transformers(saved, ours, variant):
    theirs, ours = saved[variant][1], ours[variant]

    prompt, steps = IDS[:12], 12                                     # 24 tokens: wraps the window
    theirs.generation_config.eos_token_id = None
    expected = theirs.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                               max_new_tokens=steps, do_sample=False, pad_token_id=0)[0, len(prompt):].tolist()
    assert ours.generate_ids([prompt], steps, stop_tokens=[])[0] == expected


def test_config_fields_are_read(saved):
    e2b = gemma_kit.read_config(saved["e2b"][0])
    assert (e2b.per_layer_input_dim, e2b.num_kv_shared_layers, e2b.use_double_wide_mlp) == (8, 3, True)
    assert [e2b.kv_sharing(i) for i in range(7)] == [None, None, "store", "store", "reuse", "reuse", "reuse"]
    assert [e2b.mlp_dim_of(i) for i in (0, 3, 4)] == [48, 48, 96]
    moe = gemma_kit.read_config(saved["moe"][0])
    assert (moe.num_experts, moe.num_experts_per_token, moe.expert_intermediate_dim) == (4, 2, 24)
    assert moe.attention_k_eq_v and moe.kv_heads_of(5) == 1 and moe.kv_heads_of(0) == 2
    assert (moe.head_dim_of(0), moe.head_dim_of(5), moe.rope_fraction(5), moe.final_soft_cap) == (8, 16, 0.25, 30.0)


@pytest.mark.parametrize("variant", ["e2b", "moe"])
def test_chunks_appended_to_a_live_cache_match_the_full_forward_pass(ours, variant, padding=2):
    backbone = ours[variant].backbone
    full = np.asarray(ops.convert_to_numpy(backbone(np.asarray([IDS], np.int32))))[0]   # (seq, vocab)
    padded = np.concatenate([np.zeros(padding, np.int32), np.asarray(IDS, np.int32)])
    start = np.full(1, padding, np.int32)
    caches = backbone.init_cache(1, 40)
    logits, caches = backbone.prefill(padded[None, :padding + 7], start, caches)
    np.testing.assert_allclose(ops.convert_to_numpy(logits)[0], full[6], atol=1e-4, rtol=1e-4)
    end = padding + 7
    for size in (10, 1, 12):                                         # a chunk longer than the window too
        time, end = end, end + size
        logits, caches = backbone.extend(padded[None, time:end], ops.convert_to_tensor(np.int32(time)), start,
                                         caches)
        np.testing.assert_allclose(ops.convert_to_numpy(logits)[0], full[end - padding - 1], atol=1e-4,
                                   rtol=1e-4, err_msg=f"a chunk of {size} tokens at time {time}")


def test_cache_bytes_with_and_without_kv_sharing(saved):
    config = gemma_kit.read_config(saved["e2b"][0])
    shared = Gemma4Backbone(config)
    alone = Gemma4Backbone(config.replace(num_kv_shared_layers=0))
    batch, length = 2, 100
    # Per layer: keys + values, (batch, slots, kv_heads, head_dim) float32; local layers keep the window.
    per_layer = [2 * batch * (WINDOW if t == "local" else length) * config.kv_heads_of(i) * config.head_dim_of(i) * 4
                 for i, t in enumerate(config.layer_types)]
    owners = [i for i in range(config.num_layers) if config.kv_sharing(i) != "reuse"]     # layers 0-3
    assert cache_bytes(shared.init_cache(batch, length)) == sum(per_layer[i] for i in owners)
    assert cache_bytes(alone.init_cache(batch, length)) == sum(per_layer)
    assert len(owners) == 4 and sum(per_layer[i] for i in owners) < sum(per_layer)


def test_a_borrowing_layer_has_no_key_or_value_weights(saved, ours):
    backbone = ours["e2b"].backbone
    paths = backbone.weights_by_path()
    assert "block_3/attention.key.kernel" in paths and "block_4/attention.key.kernel" not in paths
    assert "block_4/attention.value.kernel" not in paths and "block_4/attention.query.kernel" in paths
    moe = ours["moe"].backbone.weights_by_path()
    assert "block_5/attention.key.kernel" in moe and "block_5/attention.value.kernel" not in moe   # k = v
    assert "block_0/attention.value.kernel" in moe
    assert tuple(moe["block_0/experts.gate"].shape) == (4, 32, 24)
    assert sum(int(np.prod(v.shape)) for v in backbone.weights) == gemma_kit.read_config(
        saved["e2b"][0]).num_parameters()


def test_saved_folder_reloads_in_transformers(ours, tmp_path):
    import transformers

    for variant in ("e2b", "moe"):
        folder = ours[variant].save_hf(tmp_path / variant)
        theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
        assert type(theirs).__name__ == "Gemma4ForCausalLM"
        np.testing.assert_allclose(hf_logits(theirs, IDS)[0], quick_logits(ours[variant], IDS), atol=1e-4,
                                   rtol=1e-4)


def test_a_config_we_cannot_express_is_refused(saved, tmp_path):
    import json
    import shutil

    from gemma_kit.loaders.hf_files import HuggingFaceFormatError

    folder = tmp_path / "bidirectional"
    shutil.copytree(saved["dense"][0], folder)
    config = json.load(open(folder / "config.json"))
    for change, message in [({"use_bidirectional_attention": "all"}, "use_bidirectional_attention"),
                            ({"hidden_activation": "silu"}, "hidden_activation 'silu'"),
                            ({"rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 4.0}}},
                             "rope_type 'yarn'")]:
        json.dump({**config, **change}, open(folder / "config.json", "w"))
        with pytest.raises(HuggingFaceFormatError, match=message):
            gemma_kit.read_config(str(folder))


def test_chat_format_and_thoughts(ours, monkeypatch):
    small, large = ours["e2b"], ours["moe"]
    assert (small.tokenizer.chat_format, large.tokenizer.chat_format) == ("gemma4", "gemma4_large")
    chat = [{"role": "user", "content": "2+2?"}]
    assert small.tokenizer.apply_chat_template(chat) == "<|turn>user\n2+2?<turn|>\n<|turn>model\n"
    assert large.tokenizer.apply_chat_template(chat).endswith("<|turn>model\n<|channel>thought\n<channel|>")
    assert small.tokenizer.apply_chat_template(chat, enable_thinking=True).startswith("<|turn>system\n<|think|>")

    written = "<|channel>thought\nTwo and two.<channel|>4<turn|>"   # what a thinking model writes
    ids = small.tokenizer.encode(written)
    assert small.tokenizer.decode(ids) == written
    monkeypatch.setattr(small, "generate_ids", lambda prompts, *args, **kw: [ids for _ in prompts])
    assert small.generate("2+2?") == written
    assert small.generate("2+2?", thoughts="hide") == "4"
    assert small.generate(["2+2?", "3+3?"], thoughts="return") == [("Two and two.", "4")] * 2
    with pytest.raises(ValueError, match="thoughts must be"):
        small.generate("2+2?", thoughts="drop")
