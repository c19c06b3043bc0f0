"""The project's set-up files agree with each other (a fresh clone installs what the code needs)."""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement):
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = [r for r in pip_section if not r.startswith("-e")]
    assert sorted(map(str.strip, listed)) == sorted(declared), (
        "environment.yml and pyproject.toml disagree: "
        f"only in environment.yml {sorted(set(listed) - set(declared))}, "
        f"only in pyproject.toml {sorted(set(declared) - set(listed))}")
    assert len({_name(r) for r in declared}) == len(declared), "a package is listed twice"


def test_ci_calls_make_test_and_the_readme_opens_with_the_two_commands():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#") and not line.startswith("set ") and not line.startswith("cd ")]
    assert ci == ["make test"]
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make demo") < readme.index("make test")
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()


def _run(code):
    """Run ``code`` in a fresh interpreter with the JAX backend, from outside the repository's folder."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=tempfile.gettempdir(), capture_output=True,
                          text=True, timeout=600)


@pytest.mark.once
def test_import_and_load_pull_in_neither_tensorflow_nor_keras_hub():
    done = _run("import gemma_kit, sys; gemma_kit.load('gemma3_270m'); "
                "print(sorted(m for m in ('tensorflow', 'keras_hub', 'torch') if m in sys.modules))")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "tensorflow" not in done.stderr.lower() and "cuda" not in done.stderr.lower(), done.stderr[-2000:]


@pytest.mark.once
def test_serving_does_not_import_the_cli():
    done = _run("import gemma_kit.serving, gemma_kit.serving.server, sys; print('gemma_kit.cli' in sys.modules)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
