"""The lessons' data sets, read through the package (``gemma_kit.data``), never through a relative path."""

import pytest

from gemma_kit import data


def test_a_data_set_is_read_by_name_with_its_splits():
    assert "stdlib_fim" in data.names()
    assert data.splits("stdlib_fim") == ["test", "train"]
    both = data.load("stdlib_fim")
    assert sorted(both) == ["test", "train"]
    assert len(both["train"]) == 800 and len(both["test"]) == 200          # data/README.md's counts
    assert both["test"] == data.load("stdlib_fim", "test")
    assert set(both["test"][0]) == {"prompt", "response", "source"}
    assert data.path("stdlib_fim", "train").name == "stdlib_fim_train.jsonl"


def test_an_unknown_name_or_split_is_named_in_the_error():
    with pytest.raises(KeyError, match="no data set named 'stdlib'.*stdlib_fim"):
        data.load("stdlib")
    with pytest.raises(KeyError, match="has no split 'dev'.*'test', 'train'"):
        data.load("stdlib_fim", "dev")


def test_a_shipped_file_is_found_by_name_and_a_missing_one_lists_what_is_there():
    assert data.file("make_stdlib_fim.py").read_text().startswith('"""')
    with pytest.raises(FileNotFoundError, match="no file named 'weights.bin'.*make_stdlib_fim.py"):
        data.file("weights.bin")
    with pytest.raises(FileNotFoundError, match="no file named '../setup.py'"):
        data.file("../setup.py")           # only the data folder itself, never a path out of it
