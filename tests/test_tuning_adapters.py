"""Adapters as files: our small LoRA file (round trip, checks, errors) and the PEFT export against ``peft``.

The PEFT check: a tiny random Gemma 3 with LoRA (rank 4, alpha 8: scale 2) on every attention and
MLP projection, A and B both random (B = 0 would make the check vacuous); ``save_hf`` writes the base,
``export_peft`` the adapter; transformers + ``PeftModel.from_pretrained`` must give our logits.
"""

import json
import os

import numpy as np
import pytest

import torch  # noqa: E402  the oracle; installed by the test set-up
import transformers  # noqa: E402
import peft  # noqa: E402

from gemma_kit import tuning  # noqa: E402
from test_lora import IDS, logits, randomize_lora, tiny_griffin, tiny_model  # noqa: E402


def test_adapter_round_trip_and_file_contents(tmp_path):
    model = tiny_model()
    tuning.enable_lora(model, rank=4, targets=("query", "value", "down"), alpha=8.0, verbose=False)
    randomize_lora(model)
    path = tuning.save_adapter(model, tmp_path / "a.lora.safetensors")
    lora_bytes = sum(int(np.prod(v.shape)) * 4 for v in model.backbone.trainable_weights)
    assert os.path.getsize(path) < lora_bytes + 8192                  # the LoRA matrices and a header only
    meta = tuning.read_adapter_metadata(path)
    assert (meta["rank"], meta["alpha"], meta["targets"]) == (4, 8.0, ["down", "query", "value"])
    fresh = tiny_model()                                                 # the same base, no LoRA yet
    tuning.load_adapter(fresh, path)
    np.testing.assert_allclose(fresh.logits(IDS), logits(model.backbone, IDS), atol=1e-5)   # compiled path too


def test_adapter_mismatches_fail_clearly(tmp_path):
    model = tiny_model()
    tuning.enable_lora(model, rank=4, verbose=False)
    path = tuning.save_adapter(model, tmp_path / "a.lora.safetensors")

    other_rank = tiny_model()
    tuning.enable_lora(other_rank, rank=2, verbose=False)
    with pytest.raises(tuning.AdapterMismatchError, match="holds rank 4 .* has LoRA rank 2"):
        tuning.load_adapter(other_rank, path)

    import gemma_kit
    from conftest import tiny_gemma3_config
    with pytest.raises(tuning.AdapterMismatchError, match="was trained on .*vocab_size.: 320.*vocab_size.: 400"):
        tuning.load_adapter(gemma_kit.GemmaBackbone(tiny_gemma3_config(vocab_size=400)), path)
    with pytest.raises(tuning.AdapterMismatchError, match="does not fit this model: missing .*proj_q"):
        tuning.load_adapter(tiny_griffin(), path)                       # same widths, other layers
    fewer_layers = gemma_kit.GemmaBackbone(tiny_gemma3_config(num_layers=3,
                                                              layer_types=("local", "local", "global")))
    with pytest.raises(tuning.AdapterMismatchError, match="does not fit this model: missing \\[\\], unexpected"):
        tuning.load_adapter(fewer_layers, path)
    assert tuning.lora_state(fewer_layers) is None                      # nothing half-loaded

    (tmp_path / "not_an_adapter.safetensors").write_bytes(open(path, "rb").read().replace(
        b"gemma_kit.lora.v1", b"something.else.v1"))
    with pytest.raises(tuning.AdapterMismatchError, match="not a gemma_kit LoRA adapter"):
        tuning.load_adapter(tiny_model(), tmp_path / "not_an_adapter.safetensors")
    with pytest.raises(FileNotFoundError, match="No adapter file"):
        tuning.load_adapter(tiny_model(), tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="no LoRA weights to save"):
        tuning.save_adapter(tiny_model(), tmp_path / "b.safetensors")


def test_peft_export_reproduces_our_logits(tmp_path):
    model = tiny_model()
    tuning.enable_lora(model, rank=4, targets=("attention", "mlp"), alpha=8.0, verbose=False)
    randomize_lora(model, scale=0.2)
    ours = logits(model.backbone, IDS)
    base_folder = model.save_hf(tmp_path / "base")
    adapter = tuning.export_peft(model, tmp_path / "adapter")
    config = json.load(open(os.path.join(adapter, "adapter_config.json")))
    assert sorted(config["target_modules"]) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj",
                                                "up_proj", "v_proj"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(base_folder, torch_dtype=torch.float32)
    with torch.no_grad():
        base_theirs = hf(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    tuned = peft.PeftModel.from_pretrained(hf, adapter).eval()
    with torch.no_grad():
        theirs = tuned(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    assert np.abs(theirs - base_theirs).max() > 1e-2                   # the adapter does something
    np.testing.assert_allclose(theirs, ours, atol=1e-4)


def test_peft_export_refuses_griffin_and_no_lora(tmp_path):
    griffin = tiny_griffin()
    tuning.enable_lora(griffin, rank=2, verbose=False)
    with pytest.raises(ValueError, match="PEFT export supports Gemma models"):
        tuning.export_peft(griffin, tmp_path / "x")
    with pytest.raises(ValueError, match="no LoRA weights to export"):
        tuning.export_peft(tiny_model(), tmp_path / "y")
