"""Write constraints.txt and environment.yml: the versions the test suite last passed with.

    .venv/bin/python scripts/pin_versions.py     # after `make test` passed: pin what it passed with

`make test` and `make demo` install with ``-c constraints.txt``, so a fresh clone gets the
versions the suite last passed with, not whatever PyPI has that day. environment.yml (conda)
lists pyproject.toml's packages at the same pinned versions, and passes the constraints on for
the rest (tests/test_packaging.py checks that the three files agree). constraints.txt holds
the dependency closure of ``gemma-kit[test]`` (the test extra holds the site builder too) as
installed in this environment, read from the packages' own metadata; packages installed by hand
for other work (a benchmark's llama.cpp, a linter) are not in it.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("test",)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str, extras) -> dict:
    """{canonical name: installed version} of ``root`` and everything it requires, with ``extras``."""
    found, todo, visited = {}, [(root, tuple(extras))], set()
    while todo:
        name, wanted = todo.pop()
        if (canonical(name), wanted) in visited:
            continue
        visited.add((canonical(name), wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue                                  # a requirement for another platform or Python
        found[canonical(dist.metadata["Name"])] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            markers = [{"extra": extra} for extra in wanted or ("",)]
            if requirement.marker is None or any(requirement.marker.evaluate(m) for m in markers):
                todo.append((requirement.name, tuple(sorted(requirement.extras))))
    return found


def environment_yml(pins: dict) -> str:
    """conda's environment file: pyproject.toml's packages, each at its pinned version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = ["# conda env create -f environment.yml && conda activate gemma-kit",
             "# Written by scripts/pin_versions.py: pyproject.toml's packages at the versions in constraints.txt,",
             "# where `make test` last passed (tests/test_packaging.py checks that the three agree).",
             "name: gemma-kit", "channels:", "  - conda-forge", "dependencies:", "  - python=3.11", "  - pip", "  - pip:",
             "      - -c constraints.txt"]
    for title, requirements in (("runtime", project["dependencies"]), ("tests", project["optional-dependencies"]["test"])):
        lines.append(f"      # {title}")
        for text in requirements:
            requirement = Requirement(text)
            extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            lines.append(f"      - {requirement.name}{extras}=={pins[canonical(requirement.name)]}")
    lines += ["      # the kit itself", "      - -e ."]
    return "\n".join(lines) + "\n"


def main() -> int:
    pins = closure("gemma-kit", EXTRAS)
    pins.pop("gemma-kit")
    pins = {name: version.split("+")[0] for name, version in pins.items()}    # torch 2.13.0+cpu -> 2.13.0
    header = ("# Written by scripts/pin_versions.py from an environment where `make test` passed.\n"
              "# `make test` and `make demo` install with -c constraints.txt; environment.yml passes it on.\n")
    (ROOT / "constraints.txt").write_text(header + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    (ROOT / "environment.yml").write_text(environment_yml(pins))
    print(f"constraints.txt: {len(pins)} packages pinned; environment.yml rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
