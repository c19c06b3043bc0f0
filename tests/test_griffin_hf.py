"""RecurrentGemma from a Hugging Face folder, against transformers' ``RecurrentGemmaForCausalLM``.

A tiny random transformers model (lru_width != width, the (recurrent, recurrent, attention)
pattern cycled over 5 layers, a window of 6) is saved with ``save_pretrained`` and loaded
with ``gemma_kit.load``. transformers lets a query see ``window`` keys where the official code
(and gemma_kit, whose window tests/test_griffin.py checks against the official package) sees
``window + 1``, so:

- up to the window the two agree;
- past it they differ, and loading with ``attention_window_size=window - 1`` reproduces
  transformers exactly, which pins the difference down to that one key.

Also here: the folder a RecurrentGemma preset downloads from Kaggle (DeepMind's ``2b.pt`` and
``tokenizer.model``, ``kaggle://google/recurrentgemma/pyTorch/2b``) loads as that ``.pt``.
"""

import json
import os

import numpy as np
import pytest
import torch

import gemma_kit
from gemma_kit.loaders.deepmind import GriffinCheckpointError

VOCAB, WINDOW, SEQ = 320, 6, 20


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    from transformers import RecurrentGemmaConfig, RecurrentGemmaForCausalLM
    from tiny_gguf import tiny_tokenizer

    torch.manual_seed(0)
    config = RecurrentGemmaConfig(num_hidden_layers=5, vocab_size=VOCAB, hidden_size=32, intermediate_size=96,
                                  num_attention_heads=4, num_key_value_heads=1, lru_width=48,
                                  attention_window_size=WINDOW, block_types=["recurrent", "recurrent", "attention"],
                                  logits_soft_cap=30.0, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    model = RecurrentGemmaForCausalLM(config).eval()
    with torch.no_grad():                       # every weight random, norm scales and biases included
        for name, param in model.named_parameters():
            if name.endswith("recurrent_param"):
                param.uniform_(-3.0, 1.0)
            elif name.endswith(("norm.weight", "bias")):
                param.normal_(0.0, 0.1)
            else:
                param.normal_(0.0, (1.5 if param.ndim > 1 else 0.3) * param.shape[-1] ** -0.5)
    folder = str(tmp_path_factory.mktemp("hf_griffin"))
    model.save_pretrained(folder)
    tiny_tokenizer().save(os.path.join(folder, "tokenizer.model"))
    return folder, model


def _transformers_logits(model, tokens):
    with torch.no_grad():
        return model(torch.as_tensor(tokens)).logits.float().numpy()


def _tokens(seed=0):
    return np.random.default_rng(seed).integers(4, VOCAB, (2, SEQ)).astype(np.int32)


def test_config_comes_from_config_json(hf_folder):
    folder, _ = hf_folder
    config = gemma_kit.read_config(folder)
    assert (config.width, config.mlp_expanded_width, config.num_heads, config.lru_width) == (32, 48, 4, 48)
    assert config.block_types == ("recurrent", "recurrent", "attention", "recurrent", "recurrent")
    assert config.attention_window_size == WINDOW and config.logits_soft_cap == 30.0


def test_logits_match_transformers_within_the_window(hf_folder):
    folder, reference = hf_folder
    model = gemma_kit.load(folder)
    tokens = _tokens()
    ours, theirs = model.logits(tokens), _transformers_logits(reference, tokens)
    # Positions 0 .. WINDOW - 1: both see every earlier key.
    np.testing.assert_allclose(ours[:, :WINDOW], theirs[:, :WINDOW], atol=1e-4, rtol=0)
    # Past the window the official meaning (window + 1 keys) differs from transformers' (window keys).
    assert np.abs(ours[:, WINDOW + 1:] - theirs[:, WINDOW + 1:]).max() > 1e-3


def test_window_minus_one_reproduces_transformers_past_the_window(hf_folder):
    folder, reference = hf_folder
    model = gemma_kit.load(folder, attention_window_size=WINDOW - 1)
    tokens = _tokens(1)
    np.testing.assert_allclose(model.logits(tokens), _transformers_logits(reference, tokens), atol=1e-4, rtol=0)


def test_greedy_tokens_match_transformers(hf_folder):
    folder, reference = hf_folder
    model = gemma_kit.load(folder, attention_window_size=WINDOW - 1)
    prompt = [model.tokenizer.bos_id] + model.tokenizer.encode("a b c")
    ours = model.generate_ids([prompt], max_new_tokens=12, stop_tokens=[])[0]
    with torch.no_grad():
        out = reference.generate(torch.as_tensor([prompt]), max_new_tokens=12, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)
    assert ours == out[0, len(prompt):].tolist()


def test_broken_folders_name_the_problem(hf_folder, tmp_path):
    folder, _ = hf_folder
    broken = tmp_path / "kv_heads"
    broken.mkdir()
    values = json.load(open(os.path.join(folder, "config.json")))
    (broken / "config.json").write_text(json.dumps({**values, "num_key_value_heads": 4}))
    with pytest.raises(ValueError, match="num_key_value_heads is 4"):
        gemma_kit.read_config(str(broken))

    from safetensors.numpy import load_file, save_file
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "config.json").write_text(json.dumps(values))
    save_file({k: v for k, v in tensors.items() if "layers.2.temporal_block.k_proj" not in k},
              str(missing / "model.safetensors"))
    with pytest.raises(GriffinCheckpointError, match=r"model\.layers\.2\.temporal_block\.k_proj\.weight"):
        gemma_kit.load(str(missing))
    with pytest.raises(TypeError, match="unknown option"):
        gemma_kit.load(folder, attention_window=4)


def test_kaggle_pytorch_folder_loads_as_its_pt_file(tmp_path, monkeypatch):
    """A preset name -> its kaggle:// handle -> a folder with ``2b.pt`` and ``tokenizer.model`` (kagglehub's
    layout) -> DeepMind's .pt format, with the tokenizer beside it; logits as the official torch model's."""
    from recurrentgemma import common, torch as rgt
    from tiny_gguf import tiny_tokenizer
    from gemma_kit.loaders import kaggle

    R, A = common.TemporalBlockType.RECURRENT, common.TemporalBlockType.ATTENTION
    config = common.GriffinConfig(vocab_size=VOCAB, width=24, mlp_expanded_width=40, num_heads=2, block_types=(R, R, A),
                                  embeddings_scale_by_sqrt_dim=True, attention_window_size=2048, logits_soft_cap=30.0)
    torch.manual_seed(1)
    official = rgt.Griffin(config, gradient_checkpointing=False).eval()
    with torch.no_grad():                       # every weight random, norm scales and biases included
        for name, param in official.named_parameters():
            param.uniform_(-3.0, 1.0) if name.endswith("a_param") else param.normal_(0.0, 0.3)
    folder = tmp_path / "google" / "recurrentgemma" / "pyTorch" / "2b" / "1"
    folder.mkdir(parents=True)
    torch.save(official.state_dict(), folder / "2b.pt")
    tiny_tokenizer().save(str(folder / "tokenizer.model"))

    handles = []
    monkeypatch.setattr(kaggle, "DOWNLOAD", lambda handle: handles.append(handle) or str(folder))
    model = gemma_kit.load("recurrent_gemma_2b_en")
    assert handles == ["google/recurrentgemma/pyTorch/2b"]
    assert model.config.name == "recurrentgemma_2b" and model.tokenizer.vocab_size == VOCAB
    tokens = _tokens(2)
    with torch.no_grad():
        expected = official(torch.as_tensor(tokens, dtype=torch.long), torch.arange(SEQ).expand(2, SEQ),
                            return_cache=False)[0].float().numpy()
    np.testing.assert_allclose(model.logits(tokens), expected, atol=1e-4, rtol=0)
    assert gemma_kit.read_config(str(folder)) == gemma_kit.read_config(str(folder / "2b.pt")) == model.config
    torch.save(official.state_dict(), folder / "copy.pt")                   # two .pt files: which one?
    with pytest.raises(ValueError, match="not a checkpoint format"):
        gemma_kit.read_config(str(folder))
