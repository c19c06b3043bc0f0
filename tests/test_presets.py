"""The one preset table: every count equals the official one, handles are keras-hub's, names agree, no download."""

import pytest

import gemma_kit
from gemma_kit.cli import main
from gemma_kit.models.gemma.config import GLOBAL, LOCAL, GemmaConfig
from gemma_kit.presets import PRESETS, get_preset, preset_handle

# The official counts the task names, written out here so a typo in presets.py cannot hide.
OFFICIAL = {"gemma_2b_en": 2_506_172_416, "gemma2_9b_en": 9_241_705_984, "gemma3_1b": 999_885_952,
            "gemma3_27b_text": 27_009_002_240, "gemma3_270m": 268_098_176}

FAMILY = [
    "gemma_2b_en", "gemma_7b_en", "gemma_instruct_2b_en", "gemma_instruct_7b_en",
    "gemma_1.1_instruct_2b_en", "gemma_1.1_instruct_7b_en",
    "gemma2_2b_en", "gemma2_9b_en", "gemma2_27b_en", "gemma2_instruct_2b_en", "gemma2_instruct_9b_en",
    "gemma2_instruct_27b_en",
    "gemma3_270m", "gemma3_instruct_270m", "gemma3_1b", "gemma3_instruct_1b", "gemma3_4b_text",
    "gemma3_instruct_4b_text", "gemma3_12b_text", "gemma3_instruct_12b_text", "gemma3_27b_text",
    "gemma3_instruct_27b_text",
    "code_gemma_2b_en", "code_gemma_7b_en", "code_gemma_instruct_7b_en", "code_gemma_1.1_2b_en",
    "code_gemma_1.1_instruct_7b_en",
]

GEMMA4 = ["gemma4_2b", "gemma4_instruct_2b", "gemma4_4b", "gemma4_instruct_4b", "gemma4_26b_a4b",
          "gemma4_instruct_26b_a4b", "gemma4_31b", "gemma4_instruct_31b"]   # counts: tests/test_gemma4_presets.py

GRIFFIN = ["recurrent_gemma_2b_en", "recurrent_gemma_instruct_2b_en", "recurrent_gemma_9b_en",
           "recurrent_gemma_instruct_9b_en"]


def _keras_hub_presets():
    from keras_hub.src.models.gemma.gemma_presets import backbone_presets as gemma
    from keras_hub.src.models.gemma3.gemma3_presets import backbone_presets as gemma3
    return {**gemma, **gemma3}


def test_the_whole_family_is_there():
    assert sorted(PRESETS) == sorted(FAMILY + GEMMA4 + GRIFFIN)


@pytest.mark.parametrize("name", FAMILY + GRIFFIN)
def test_every_row_has_the_same_fields(name):
    preset = PRESETS[name]
    assert preset.kaggle_handle.startswith("kaggle://") and preset.hf_repo.startswith("google/")
    assert preset.official_source and preset.name == name


@pytest.mark.parametrize("name", sorted(set(PRESETS) | set(gemma_kit.NAMED_SOURCES)))
def test_load_and_info_know_the_same_names(name, monkeypatch, capsys):
    """Every name ``gemma-kit info`` knows, ``gemma_kit.load`` resolves (here up to the download), and back."""
    from gemma_kit import loaders
    assert main(["info", name]) == 0 and "parameters" in capsys.readouterr().out
    fetched = []
    monkeypatch.setitem(loaders.SCHEMES, "kaggle", lambda rest: fetched.append(rest) or "/downloaded/folder")
    path = loaders.resolve(name)
    if name in gemma_kit.NAMED_SOURCES:                  # shipped on PyPI: a real local file, no download
        assert path.endswith(".gguf") and not fetched
    else:
        assert path == "/downloaded/folder" and fetched == [PRESETS[name].kaggle_handle.removeprefix("kaggle://")]


def test_an_unknown_name_is_unknown_to_both(capsys):
    from gemma_kit import loaders
    assert main(["info", "gemma5_9000b"]) == 2 and "gemma5_9000b" in capsys.readouterr().err
    with pytest.raises(ValueError, match="gemma5_9000b"):
        loaders.resolve("gemma5_9000b")


@pytest.mark.parametrize("name", FAMILY + GRIFFIN)
def test_parameter_count_equals_the_official_count(name):
    preset = PRESETS[name]
    assert preset.config.num_parameters() == preset.official_parameters
    assert preset.config.name == name


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_counts_named_in_the_task(name):
    assert PRESETS[name].config.num_parameters() == OFFICIAL[name]


@pytest.mark.parametrize("name", FAMILY)
def test_count_and_handle_agree_with_keras_hub(name):
    theirs = _keras_hub_presets()[name]
    assert PRESETS[name].official_parameters == theirs["metadata"]["params"]
    assert preset_handle(name) == theirs["kaggle_handle"]
    assert preset_handle(name).startswith("kaggle://") and PRESETS[name].hf_repo.startswith("google/")


@pytest.mark.parametrize("name", FAMILY + GEMMA4 + GRIFFIN)
def test_read_config_needs_no_download(name, monkeypatch):
    from gemma_kit import loaders

    def no_resolve(source):
        raise AssertionError(f"read_config({source!r}) tried to resolve a checkpoint")

    monkeypatch.setattr(loaders, "resolve", no_resolve)
    assert gemma_kit.read_config(name) is PRESETS[name].config


def test_info_prints_our_count_and_the_official_one(capsys):
    assert main(["info", "gemma_2b_en"]) == 0
    out = capsys.readouterr().out
    parameters = [line for line in out.splitlines() if line.startswith("parameters")]
    official = [line for line in out.splitlines() if line.startswith("official")]
    assert parameters and "2,506,172,416" in parameters[0]
    assert official and "2,506,172,416" in official[0]
    assert "kaggle://keras/gemma/keras/gemma_2b_en/3" in out and "google/gemma-2b" in out


def test_unknown_names_suggest_close_matches(capsys):
    with pytest.raises(ValueError, match="'gemma2_2b_en'"):
        get_preset("gemma2_2b")
    with pytest.raises(ValueError, match="gemma3_instruct_1b"):
        preset_handle("gemma3_instrct_1b")
    with pytest.raises(ValueError, match="known presets"):
        get_preset("llama")


def test_gemma1_attention_kinds():
    two, seven = PRESETS["gemma_2b_en"].config, PRESETS["gemma_7b_en"].config
    assert two.num_kv_heads == 1 and two.num_query_heads == 8                    # multi-query
    assert seven.num_kv_heads == seven.num_query_heads == 16                      # multi-head
    assert PRESETS["code_gemma_7b_en"].config.replace(name="x") == seven.replace(name="x")


def test_gemma2_scaling_caps_and_window():
    big = PRESETS["gemma2_27b_en"].config
    assert big.head_dim == 128 and big.query_pre_attn_scalar == 144 == big.hidden_dim / big.num_query_heads
    assert PRESETS["gemma2_9b_en"].config.query_pre_attn_scalar == 256
    for name in ("gemma2_2b_en", "gemma2_9b_en", "gemma2_27b_en"):
        c = PRESETS[name].config
        assert (c.attn_soft_cap, c.final_soft_cap, c.sliding_window) == (50.0, 30.0, 4096)
        assert c.layer_types[:2] == (LOCAL, GLOBAL) and c.max_sequence_length == 8192


def test_gemma3_window_rope_and_scaling():
    assert PRESETS["gemma3_27b_text"].config.query_pre_attn_scalar == 168 == 5376 / 32
    for name, window, factor, length in [("gemma3_270m", 512, 1.0, 32_768), ("gemma3_1b", 512, 1.0, 32_768),
                                         ("gemma3_4b_text", 1024, 8.0, 131_072),
                                         ("gemma3_27b_text", 1024, 8.0, 131_072)]:
        c = PRESETS[name].config
        assert (c.sliding_window, c.rope_scaling_factor, c.max_sequence_length) == (window, factor, length)
        assert c.layer_types[:6] == (LOCAL,) * 5 + (GLOBAL,) and c.use_qk_norm and c.rope_base_global == 1e6


@pytest.mark.parametrize("name", FAMILY + GEMMA4)
def test_config_round_trip(name):
    config = PRESETS[name].config
    kind = type(config)                                  # GemmaConfig or Gemma4Config
    assert kind.from_dict(config.to_dict()) == config
    assert kind.from_dict(__import__("json").loads(config.to_json())) == config


def test_info_shows_gemma4_total_effective_and_active_counts(capsys):
    assert main(["info", "gemma4_26b_a4b"]) == 0
    out = capsys.readouterr().out
    assert "25,233,141,790" in out and "3,822,530,590" in out      # all experts; the 8 chosen ones
    assert main(["info", "gemma4_2b"]) == 0
    out = capsys.readouterr().out
    assert "4,628,569,379" in out and "2,279,759,139" in out       # with and without the PLE table


def test_embedded_270m_matches_its_preset(gguf_path):
    """The GGUF shipped on PyPI describes the same architecture as the gemma3_270m preset."""
    ours = gemma_kit.read_config(gguf_path)
    preset = PRESETS["gemma3_270m"].config
    assert ours.replace(name="x", rms_norm_eps=1e-6) == preset.replace(name="x")
