"""The project's set-up files agree with each other (a fresh clone installs what the code needs)."""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement):
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins():
    """constraints.txt as {package name: version}."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    assert all(len(pair) == 2 for pair in pairs), "constraints.txt: every line is name==version"
    return {_name(name): version.strip() for name, version in pairs}


def test_constraints_pin_every_declared_package_at_a_version_pyproject_admits():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    assert len({_name(r.name) for r in declared}) == len(declared), "a package is listed twice"
    pins = _pins()
    for requirement in declared:
        assert _name(requirement.name) in pins, f"constraints.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(pins[_name(requirement.name)], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[_name(requirement.name)]}, "
            f"outside pyproject.toml's {requirement}")
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("-c constraints.txt -e ") == 2, "make demo and make test install with the constraints"


def test_environment_yml_lists_pyproject_packages_at_the_pinned_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-c constraints.txt" in pip_section and "-e ." in pip_section
    listed = {_name(r.name): r for r in map(Requirement, (r for r in pip_section if not r.startswith("-")))}
    assert sorted(listed) == sorted(_name(r.name) for r in declared), "environment.yml and pyproject.toml disagree"
    pins = _pins()
    for name, requirement in listed.items():
        assert str(requirement.specifier) == f"=={pins[name]}", (
            f"environment.yml has {requirement}, constraints.txt {name}=={pins[name]}: "
            "run scripts/pin_versions.py")


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
