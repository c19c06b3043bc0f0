"""gemma_kit.pretrain: tokenizer training, packing, the causal-LM wrapper, save/load and the shipped small models."""

import json
import math

import keras
import numpy as np
import pytest
from keras import ops

import gemma_kit.data
from gemma_kit import pretrain
from gemma_kit.models.gemma import GemmaBackbone, GemmaConfig
from gemma_kit.models.griffin import GriffinBackbone, griffin_block_types
from gemma_kit.tokenizer import GemmaTokenizer

CODE = 'class Point:\n    def __init__(self, x, y=None):\n        self.x = x  # tab\tand é ✓\n\n\n'


@pytest.fixture(scope="module")
def corpus():
    return pretrain.stdlib_corpus(max_bytes=200_000)


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return pretrain.train_tokenizer(corpus["train"], vocab_size=512, max_lines=5_000)


@pytest.fixture(scope="module")
def shipped_tokenizer():
    return GemmaTokenizer.from_file(gemma_kit.data.file(pretrain.SHIPPED_TOKENIZER))


def test_corpus_splits_by_module(corpus):
    assert corpus["train"] and corpus["held_out"]
    assert not set(corpus["train"]) & set(corpus["held_out"])
    assert sum(map(len, corpus["train"])) + sum(map(len, corpus["held_out"])) <= 200_000


def test_trained_tokenizer_has_gemmas_ids_and_round_trips_code(tokenizer, shipped_tokenizer):
    for tok, size in ((tokenizer, 512), (shipped_tokenizer, pretrain.RECIPE["vocab_size"])):
        assert tok.vocab_size == size
        assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
        assert tok.decode(tok.encode(CODE)) == CODE                     # spaces, newlines, tab, é, ✓ (bytes)
        assert tok.id_to_token(tok.encode("        x")[0]) == "\u2581" * 8   # indentation is one piece
    with pytest.raises(ValueError, match="no non-empty line"):
        pretrain.train_tokenizer(["", "   \n"])


def test_pack_shifts_targets_and_restarts_positions_at_documents(tokenizer):
    docs = ["a = 1\n", "def f(x):\n    return x\n", "b = [1, 2, 3]\n" * 3]
    packed = pretrain.pack(docs, tokenizer, seq_len=8)
    stream = np.concatenate([[tokenizer.bos_id] + tokenizer.encode(d) + [tokenizer.eos_id] for d in docs])
    rows = (len(stream) - 1) // 8
    assert packed["token_ids"].shape == packed["targets"].shape == (rows, 8)
    np.testing.assert_array_equal(packed["token_ids"].ravel(), stream[: rows * 8])
    np.testing.assert_array_equal(packed["targets"].ravel(), stream[1: rows * 8 + 1])       # the next token
    for ids, pos in zip(packed["token_ids"], packed["segment_pos"]):
        assert pos[0] == 0                                                  # a row starts a segment
        for t in range(1, 8):
            assert pos[t] == (0 if ids[t] == tokenizer.bos_id else pos[t - 1] + 1)
    np.testing.assert_array_equal(packed["weights"] == 0, packed["targets"] == tokenizer.bos_id)
    with pytest.raises(ValueError, match="do not fill one row"):
        pretrain.pack(["x"], tokenizer, seq_len=64)


def test_fit_with_the_causal_lm_wrapper_lowers_the_loss(tokenizer, corpus):
    keras.utils.set_random_seed(0)
    config = GemmaConfig(vocab_size=tokenizer.vocab_size, hidden_dim=32, num_layers=1, num_query_heads=2,
                         num_kv_heads=1, head_dim=16, intermediate_dim=64, name="tiny")
    rows = {k: v[:8] for k, v in pretrain.pack(corpus["train"][:2], tokenizer, seq_len=32).items()}
    history = pretrain.train_model(GemmaBackbone(config), rows, rows, steps=12, batch_size=4, learning_rate=1e-2,
                                   warmup=2, evaluate_every=4, verbose=0)
    assert history["step"] == [4, 8, 12]
    assert history["held_out_loss"][-1] < history["held_out_loss"][0] - 0.5
    assert history["loss"][0] < math.log(tokenizer.vocab_size) + 1.0
    with pytest.raises(ValueError, match="multiple of evaluate_every"):
        pretrain.train_model(GemmaBackbone(config), rows, steps=10, evaluate_every=4)


def test_same_size_pair_matches_parameter_counts():
    griffin, gemma = pretrain.same_size_pair(vocab_size=2048, width=128, blocks=6, window=32)
    assert griffin.block_types == griffin_block_types(6) and gemma.num_layers == 6
    assert abs(griffin.num_parameters() - gemma.num_parameters()) < 0.01 * griffin.num_parameters()


def test_save_and_load_round_trip_gives_equal_logits(tmp_path):
    keras.utils.set_random_seed(1)            # a tiny Gemma: the format is the same for both families
    config = GemmaConfig(vocab_size=300, hidden_dim=32, num_layers=2, num_query_heads=2, num_kv_heads=1,
                         head_dim=16, intermediate_dim=64, name="tiny")
    backbone = GemmaBackbone(config)
    ids = np.random.default_rng(0).integers(0, 300, (2, 20)).astype(np.int32)
    expected = ops.convert_to_numpy(backbone(ids))
    paths = pretrain.save_model(tmp_path / "exact", backbone, dtype="float32", note="a test")
    assert json.loads(paths[0].read_text())["note"] == "a test"
    np.testing.assert_allclose(ops.convert_to_numpy(pretrain.load_model(paths[0])(ids)), expected, atol=1e-5)
    half = pretrain.load_model(pretrain.save_model(tmp_path / "half", backbone)[1])          # float16 storage
    np.testing.assert_allclose(ops.convert_to_numpy(half(ids)), expected, atol=0.05)

    meta = json.loads(paths[0].read_text())
    meta["config"]["hidden_dim"] = 64
    (tmp_path / "wrong.json").write_text(json.dumps(meta))
    (tmp_path / "wrong.safetensors").write_bytes(paths[1].read_bytes())
    with pytest.raises(ValueError, match=r"wrong\.safetensors: tensor 'token_embedding.embeddings'"):
        pretrain.load_model(tmp_path / "wrong")
    meta["family"] = "llama"
    (tmp_path / "wrong.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="field 'family' is 'llama'"):
        pretrain.load_model(tmp_path / "wrong")


@pytest.mark.parametrize("family", ["griffin", "gemma"])
def test_shipped_models_are_trained(family, shipped_tokenizer):
    model = pretrain.load_small(family)
    assert model.backbone.count_params() == pretrain.shipped_metadata(family)["parameters"]
    held_out = pretrain.stdlib_corpus(max_bytes=300_000)["held_out"]       # modules no training run saw
    rows = {k: v[:4] for k, v in pretrain.pack(held_out, shipped_tokenizer, seq_len=128).items()}
    logits = model.logits(rows["token_ids"])                 # compiled; each row read as one document
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, rows["targets"][..., None], -1)[..., 0]
    loss = float(nll.mean())
    assert loss < 0.7 * math.log(model.tokenizer.vocab_size), loss     # a random model scores about ln(vocab)
    with pytest.raises(KeyError, match="no shipped small model 'mamba'"):
        pretrain.load_small("mamba")


def test_shipped_griffins_decay_rates_moved_from_their_initialisation():
    griffin = pretrain.load_small("griffin").backbone
    keras.utils.set_random_seed(pretrain.RECIPE["seed"])                # the seed training started from
    fresh = GriffinBackbone(griffin.config).weights_by_path()
    trained = {path: ops.convert_to_numpy(v) for path, v in griffin.weights_by_path().items() if "a_param" in path}
    assert len(trained) == griffin.config.block_types.count("recurrent")
    moved = [np.abs(value - ops.convert_to_numpy(fresh[path])).mean() for path, value in trained.items()]
    assert min(moved) > 1e-3, moved
