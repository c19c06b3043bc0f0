"""Gemma 4's MTP assistant (``models/gemma4/assistant.py``, ``drafting.Assistant``) against transformers.

A tiny random E2B-like target (``gemma4_tiny.py``: KV sharing, so the assistant reads the
layers that lend their keys, not the last ones) and tiny random assistants written by
transformers' ``Gemma4AssistantForCausalLM``, with and without the centroid-masked head.
One draft step gives transformers' logits and next state; the drafts after the prompt, and
after verify passes that kept any number of drafted tokens (the target's rings rolled back
and wrapped), are what ``SinglePositionMultiTokenCandidateGenerator`` proposes; greedy
speculative decoding gives plain greedy's tokens; bad files and mismatched targets fail
with errors that say what is wrong.
"""

import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers
from keras import ops

import gemma_kit
from gemma_kit.drafting import Assistant
from gemma_kit.loaders.hf_files import HuggingFaceFormatError
from gemma_kit.speculative import RollbackCache, drafter_of
from conftest import tiny_gemma3_config
from gemma4_tiny import VOCAB, WINDOW, save_hf

K = 3                                                        # drafts per verify pass
PROMPT = [2] + np.random.default_rng(3).integers(4, VOCAB, size=14).tolist()   # 15 ids: past the window
NEW = 20
CACHE_LEN = 128                                              # what generate gives for PROMPT, NEW and K
ROPE = {"sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py


def hf_assistant(ordered, seed):
    """A 4-layer assistant (3 sliding, 1 full) of width 16 for the width-32 target, every weight random."""
    text = transformers.Gemma4TextConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=24, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=1, head_dim=8, global_head_dim=16, sliding_window=WINDOW, num_kv_shared_layers=4,
        layer_types=["sliding_attention"] * 3 + ["full_attention"], hidden_size_per_layer_input=0,
        vocab_size_per_layer_input=0, final_logit_softcapping=None, max_position_embeddings=512,
        rope_parameters=ROPE)
    config = transformers.Gemma4AssistantConfig(text_config=text, backbone_hidden_size=32, num_centroids=8,
                                                use_ordered_embeddings=ordered, centroid_intermediate_top_k=3)
    torch.manual_seed(seed)
    model = transformers.Gemma4AssistantForCausalLM(config).eval()
    model.config.text_config._attn_implementation = "eager"
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.2 + 1.0) if "norm" in name else parameter.normal_(0, 0.3)
        for name, buffer in model.named_buffers():
            if name.endswith("layer_scalar"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
            if name.endswith("token_ordering"):
                buffer.copy_(torch.randperm(VOCAB))           # the clusters: 8 groups of 40 token ids
    return model


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Folders and models: the target, an ordered-head assistant ("ordered"), a plain-head one ("plain")."""
    out = {"target": str(tmp_path_factory.mktemp("target"))}
    theirs = {"target": save_hf(out["target"], "e2b", seed=0)}
    for seed, kind in enumerate(("ordered", "plain"), 1):
        out[kind] = str(tmp_path_factory.mktemp(kind))
        theirs[kind] = hf_assistant(kind == "ordered", seed)
        theirs[kind].save_pretrained(out[kind])
    ours = {"target": gemma_kit.load(out["target"]),
            **{kind: gemma_kit.load_assistant(out[kind]) for kind in ("ordered", "plain")}}
    return out, theirs, ours


@pytest.mark.parametrize("kind", ["ordered", "plain"])
def test_one_draft_step_equals_transformers(pair, kind):
    """The same inputs_embeds and shared keys/values: 13 keys, so the sliding layers see only the last 9."""
    _, theirs, ours = pair
    rng, keys = np.random.default_rng(0), 13
    embeds = rng.normal(size=(1, 1, 64)).astype("float32")            # (batch, 1, 2 * target width)
    shared = {"sliding_attention": rng.normal(size=(2, 1, 1, keys, 8)).astype("float32"),   # (k/v, batch, heads,
              "full_attention": rng.normal(size=(2, 1, 1, keys, 16)).astype("float32")}     # keys, head_dim)
    with torch.no_grad():
        out = theirs[kind](inputs_embeds=torch.tensor(embeds), position_ids=torch.tensor([[keys]]),
                           shared_kv_states={k: tuple(torch.tensor(v)) for k, v in shared.items()})
    ours_kv = {"local": tuple(shared["sliding_attention"].transpose(0, 1, 3, 2, 4)),   # (batch, keys, heads, dim)
               "global": tuple(shared["full_attention"].transpose(0, 1, 3, 2, 4))}
    masks = {"local": np.arange(keys)[None, None] >= keys - WINDOW - 1, "global": np.ones((1, 1, keys), bool)}
    logits, state = ours[kind](embeds, np.array([[keys]], "int32"), masks, ours_kv)
    logits_error = np.abs(ops.convert_to_numpy(logits) - out.logits.numpy()).max()
    state_error = np.abs(ops.convert_to_numpy(state) - out.last_hidden_state.numpy()).max()
    print(f"\n{kind}: max |logits - transformers| = {logits_error:.2e}, |next state - transformers| = "
          f"{state_error:.2e}")
    assert logits_error < 1e-4 and state_error < 1e-4
    if kind == "ordered":                                   # 3 of 8 clusters computed; the rest one below them
        computed = ops.convert_to_numpy(logits)[0, 0] > ops.convert_to_numpy(logits)[0, 0].min()
        assert computed.sum() == 3 * VOCAB // 8


def transformers_drafts(theirs, ids):
    """What transformers' MTP candidate generator drafts after ``ids``, the target having read ``ids[:-1]``."""
    from transformers.generation.candidate_generator import SinglePositionMultiTokenCandidateGenerator

    theirs["ordered"].generation_config.num_assistant_tokens = K
    generator = SinglePositionMultiTokenCandidateGenerator(
        theirs["ordered"], theirs["target"].get_input_embeddings(), transformers.GenerationConfig(max_length=512))
    with torch.no_grad():
        outputs = theirs["target"](input_ids=torch.tensor([ids[:-1]]), use_cache=True, output_hidden_states=True,
                                   return_shared_kv_states=True)
        candidates, _ = generator.get_candidates(
            torch.tensor([ids]), model_kwargs={"attention_mask": torch.ones(1, len(ids), dtype=torch.long)},
            model_outputs=outputs, is_first_iteration=False, n_last_matches=0)
    return candidates[0, len(ids):].tolist()


def test_drafts_equal_transformers_after_the_prompt_and_after_rollbacks(pair):
    """Verify passes of random drafts keep 0..K of them (then a random token, as the target's correction):
    the target's rings (12 sliding slots; the prompt, left-padded to 16, already wraps them) roll back, and
    each round starts from the hidden state of the newest kept token. transformers is asked each time as
    if the kept text were a fresh prompt (its own generator would also show the assistant keys of the
    rejected drafts: see the module docstring of assistant.py)."""
    _, theirs, ours = pair
    drafter, rng = Assistant(ours["ordered"], max_draft=K), np.random.default_rng(7)
    drafter.start(ours["target"], PROMPT, CACHE_LEN, K + 1)
    live = RollbackCache(ours["target"], PROMPT, CACHE_LEN, K + 2, keep_hidden=True)   # as generate makes it
    drafter.attach(live)
    ids = PROMPT + [int(rng.integers(4, VOCAB))]
    for kept in [0, 3, 1, 2, 0, 3, 2]:                       # 3: every draft kept, the bonus token follows
        draft, q = drafter.propose(ids, K, rng, None)
        assert q is None and draft == transformers_drafts(theirs, ids), f"after {len(ids)} ids"
        live.feed([ids[-1]] + draft, all_logits=True, may_cut=True)   # the verify pass writes K + 1 steps
        ids = ids + draft[:kept] + [int(rng.integers(4, VOCAB))]
        live.keep(len(ids) - 1)


def test_greedy_with_the_assistant_equals_plain_greedy(pair):
    _, _, ours = pair
    target = ours["target"]
    plain = target.generate_ids([PROMPT], NEW, stop_tokens=[])
    assert target.generate_ids([PROMPT], NEW, stop_tokens=[], speculative=Assistant(ours["ordered"], K)) == plain
    stats = target.last_speculation
    assert stats.new_tokens == NEW and 0 < stats.drafted <= K * stats.verify_calls   # K a pass, fewer at the end
    assert stats.acceptance_rate == stats.accepted / stats.drafted
    sampled = [target.generate_ids([PROMPT], 8, stop_tokens=[], speculative=Assistant(ours["ordered"], K),
                                   sampler="top_k", top_k=3, seed=5)[0] for _ in range(2)]
    assert sampled[0] == sampled[1] and len(sampled[0]) == 8        # drafts drawn from q, seeded


def test_when_the_assistant_is_right_every_draft_is_accepted(pair):
    """Final norms set to zero: every logit is 0, so target and (plain-head) assistant both always say token 0."""
    _, _, ours = pair
    target, assistant = ours["target"], ours["plain"]
    norms = [target.backbone.final_norm.scale, assistant.final_norm.scale]
    saved = [ops.convert_to_numpy(norm) for norm in norms]
    try:
        for norm in norms:
            norm.assign(np.zeros(norm.shape, "float32"))
        out = target.generate_ids([PROMPT], NEW, stop_tokens=[], speculative=Assistant(assistant, K))
    finally:
        for norm, value in zip(norms, saved):
            norm.assign(value)
    stats = target.last_speculation
    assert out == [[0] * NEW] and stats.acceptance_rate == 1.0
    assert stats.verify_calls == 5 and stats.tokens_per_call == NEW / 6      # 1 + 4 + 4 + 4 + 4 + 3 tokens
    wrapped = drafter_of(assistant)                                          # speculative=<a Gemma4Assistant>
    assert isinstance(wrapped, Assistant) and wrapped.model is assistant and wrapped.max_draft == 4


def test_bad_files_and_mismatched_targets(pair, tmp_path):
    folders, _, ours = pair
    with pytest.raises(HuggingFaceFormatError, match="speculative-decoding drafter.*load_assistant"):
        gemma_kit.load(folders["ordered"])

    broken = str(tmp_path / "broken")                   # one layer that keeps its own keys: not an assistant
    shutil.copytree(folders["ordered"], broken)
    with open(os.path.join(broken, "config.json")) as f:
        config = json.load(f)
    config["text_config"]["num_kv_shared_layers"] = 3
    with open(os.path.join(broken, "config.json"), "w") as f:
        json.dump(config, f)
    with pytest.raises(HuggingFaceFormatError, match="num_kv_shared_layers=3: every one of the 4 layers"):
        gemma_kit.load_assistant(broken)

    from safetensors.numpy import load_file, save_file
    shutil.copy(os.path.join(folders["ordered"], "config.json"), broken)
    tensors = load_file(os.path.join(folders["ordered"], "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if k != "post_projection.weight"},
              os.path.join(broken, "model.safetensors"))
    with pytest.raises(HuggingFaceFormatError, match="tensor 'post_projection.weight' is missing"):
        gemma_kit.load_assistant(broken)
    tensors["masked_embedding.token_ordering"][:2] = 5   # token 5 listed twice or more, some token never
    save_file(tensors, os.path.join(broken, "model.safetensors"))
    with pytest.raises(HuggingFaceFormatError, match="token_ordering' is not a permutation"):
        gemma_kit.load_assistant(broken)

    gemma3 = tiny_gemma3_config()
    other = gemma_kit.GemmaModel(gemma_kit.GemmaBackbone(gemma3, random_init=False), None, gemma3)
    with pytest.raises(ValueError, match="drafts for a Gemma 4 target, not a GemmaConfig"):
        other.generate_ids([PROMPT], 4, stop_tokens=[], speculative=Assistant(ours["plain"]))
    wide = ours["target"].config.replace(hidden_dim=48, name="wide")
    wide_model = gemma_kit.GemmaModel(gemma_kit.Gemma4Backbone(wide, random_init=False), None, wide)
    with pytest.raises(ValueError, match="its backbone_hidden_size is 32 but the target's is 48"):
        wide_model.generate_ids([PROMPT], 4, stop_tokens=[], speculative=Assistant(ours["plain"]))
    with pytest.raises(TypeError, match="takes a Gemma4Assistant"):
        Assistant(ours["target"])
    drafter = Assistant(ours["plain"], max_draft=K)
    drafter.start(ours["target"], PROMPT, CACHE_LEN, K + 1)
    with pytest.raises(ValueError, match="sliding ring has 11 slots; the assistant needs 12"):
        drafter.attach(SimpleNamespace(caches=ours["target"].backbone.init_cache(1, CACHE_LEN, K + 1)))
