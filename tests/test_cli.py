"""The ``gemma-kit`` command: streaming generation, ``info``, and clear errors with a non-zero exit."""

import os
import subprocess
import sys

import pytest

from gemma_kit.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "gemma_kit.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)


def test_generate_streams_real_text():
    result = _run("generate", "The capital of France is", "--max-new-tokens", "8")
    assert result.returncode == 0, result.stderr
    assert "capital" in result.stdout or "Paris" in result.stdout, result.stdout


def test_info_prints_config_and_parameter_count_without_weights(capsys):
    assert main(["info", "gemma3_270m"]) == 0
    out = capsys.readouterr().out
    assert "268,098,176" in out
    assert "LLLLLG" in out and "sliding_window" in out


@pytest.mark.parametrize("args, message", [
    (["generate", ""], "prompt is empty"),
    (["generate", "Hi", "--max-new-tokens", "0"], "max-new-tokens"),
    (["generate", "Hi", "--sampler", "top_p", "--top-p", "2"], "top_p"),
    (["generate", "Hi", "--sampler", "temperature", "--temperature", "0"], "temperature"),
    (["generate", "Hi", "--model", "gemma9_1t"], "Known names"),
    (["info", "no_such_model"], "Known names"),
])
def test_bad_input_exits_non_zero_with_a_message(capsys, args, message):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_unknown_sampler_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as error:
        main(["generate", "Hi", "--sampler", "beam"])
    assert error.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
