"""Every lesson runs where learners run it: the kit's wheel in a fresh environment, the notebook alone in a folder.

This is a Colab/Kaggle session in miniature, run once per ``make test`` (in the JAX pass):

- ``pip wheel`` builds the kit's wheel (the package and the lessons' data sets), as ``make wheel`` does;
- a fresh virtual environment sees the main environment's packages through a folder of links to them,
  from which gemma_kit and its editable install are left out: the heavy dependencies (JAX, TensorFlow,
  PyTorch) are reused, as Colab has them preinstalled, and neither the repository nor its install is visible;
- the lessons' own set-up cell installs the wheel there, finding it next to the notebook as after an upload;
- each notebook is then copied alone into an empty folder and runs top to bottom on the CPU, in a kernel of
  that environment, with the shortened parameters below; a last cell, appended by the test, reports where
  gemma_kit was imported from.

A lesson's defaults are what a learner runs (minutes of training, say). The suite runs the same code with
smaller numbers: as papermill does, it inserts a cell right after the cell tagged ``parameters``.

The stored outputs (``make lessons``, ``scripts/lessons.py``) are checked here too: made by the cells as
they are now, free of machine paths, and small.
"""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
import lessons  # noqa: E402  (scripts/lessons.py: what `make lessons` stamps and checks)

# notebook file name -> source of the cell inserted after its "parameters" cell.
# Only numbers that make the run shorter belong here; the code path must be the learner's.
TEST_PARAMETERS = {
    "01_text_generation.ipynb": "MAX_NEW_TOKENS = 8",
    "02_lora_tuning.ipynb": "TRAIN_STEPS = 2\nSTEPS_PER_CHECKPOINT = 1\nBATCH_SIZE = 2\nEVAL_EXAMPLES = 4\nMAX_NEW_TOKENS = 4\n",
    "03_distributed_training.ipynb": "STEPS = 3",
    "04_vertex_ai_deployment.ipynb": "MAX_TOKENS = 8\nCLIENTS = 4",
    "05_attention_visualization.ipynb": "LONG_TOKENS = 520",
    "07_recurrentgemma.ipynb": ("CORPUS_BYTES = 300_000\nTRAIN_STEPS = 10\nEVALUATE_EVERY = 5\nWARMUP = 2\n"
                                "WIDTH, BLOCKS = 64, 3\nHELD_OUT_ROWS = 4\nPROBE_DISTANCES = (8, 48)\nPROBE_EXAMPLES = 4\n"
                                "SPEED_POSITIONS = (64,)\nSPEED_STEPS = 2"),
    "06_codegemma_fim.ipynb": "TRAIN_STEPS = 2\nBATCH_SIZE = 2\nEVAL_EXAMPLES = 4\nMAX_NEW_TOKENS = 4\n",
    "09_fast_decode.ipynb": "NEW_TOKENS = 8\nROUNDS = 1\nBF16_TOKENS = 2\nDRAFT_LENGTHS = (2,)\nCHAT_TURNS = 2\nCHAT_TOKENS = 4",
    "10_evaluation.ipynb": "MC_QUESTIONS = 12\nPPL_TEXTS = 4\nFIM_EXAMPLES = 8\nCODE_TASKS = 4\nSAMPLES = 2\nK_VALUES = (1, 2)\n"
                           "MAX_NEW_TOKENS = 8",
}
WHERE_FROM = "import gemma_kit, sys\nprint('gemma_kit from', gemma_kit.__file__, 'python', sys.prefix)"

# Run with the fresh environment's Python, from the notebook's folder: execute the notebook in a kernel of that
# environment and write it back. argv: notebook path, parameters cell source ("" for none).
RUNNER = r"""
import os, sys
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
path, override, last_cell = sys.argv[1], sys.argv[2], sys.argv[3]
kernel = KernelSpecManager().get_kernel_spec("python3").argv[0]
assert os.path.realpath(kernel) == os.path.realpath(sys.executable), f"the python3 kernel is {kernel}, not this venv"
notebook = nbformat.read(path, as_version=4)
if override:
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell("# Inserted by tests/test_notebooks.py\n" + override))
notebook.cells.append(nbformat.v4.new_code_cell(last_cell))
try:
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": os.getcwd()}}).execute()
finally:
    nbformat.write(notebook, path)
"""


def setup_cell(notebook):
    return next(cell for cell in notebook.cells if cell.cell_type == "code").source


@pytest.fixture(scope="session")
def colab(tmp_path_factory, run_folder, one_worker_at_a_time):
    """A fresh environment with the kit installed from its wheel by the lessons' own set-up cell -> its python."""
    root = tmp_path_factory.mktemp("colab")
    # One wheel per run: `make test`'s two workers each need this environment, but two `pip wheel` of the same
    # source tree at once collide in its build/ folder. The first worker builds it, the other waits and reuses it.
    dist = run_folder / "dist"
    with one_worker_at_a_time("wheel"):
        if not list(dist.glob("gemma_kit-*.whl")):
            built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                                    "-w", str(dist), str(ROOT)], capture_output=True, text=True)
            assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = dist.glob("gemma_kit-*.whl")

    links = root / "preinstalled"                      # the main environment's packages, less the kit itself
    links.mkdir()
    main_site = Path(sysconfig.get_paths()["purelib"])
    for entry in main_site.iterdir():
        if not entry.name.lower().startswith(("gemma_kit", "__editable__", "gemma-kit")):
            (links / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    venv_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    # addsitedir (not a bare path) so the links' own .pth files (namespace packages) are processed too.
    (venv_site / "preinstalled.pth").write_text(f"import site; site.addsitedir({str(links)!r})\n")

    upload = root / "upload"                           # a Colab folder with the wheel uploaded next to a notebook
    upload.mkdir()
    (upload / wheel.name).write_bytes(wheel.read_bytes())
    code = setup_cell(nbformat.read(NOTEBOOKS[0], as_version=4)) + "\nimport gemma_kit\nprint(gemma_kit.__file__)"
    installed = subprocess.run([str(python), "-c", code], cwd=upload, capture_output=True, text=True, timeout=600,
                               env=dict(os.environ, PIP_NO_INDEX="1"))   # nothing may come from PyPI here
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert Path(installed.stdout.split()[-1]).is_relative_to(venv_site), installed.stdout
    return python, wheel


@pytest.mark.once
def test_the_wheel_carries_the_package_and_the_lessons_data(colab):
    python, wheel = colab
    shown = subprocess.run([str(python), "-c", "from gemma_kit import data; print(data.folder(), data.names(), "
                            "len(data.load('stdlib_fim', 'test')), "
                            "sorted(p.name for p in data.folder().iterdir() if p.is_file()))"],   # pip adds __pycache__/
                           capture_output=True, text=True, cwd=wheel.parent)
    assert shown.returncode == 0, shown.stderr[-3000:]
    folder, rest = shown.stdout.split(" ", 1)
    assert folder.endswith("gemma_kit/datasets") and not Path(folder).is_relative_to(ROOT), shown.stdout
    in_repository = sorted(p.name for p in (ROOT / "data").iterdir() if p.is_file())   # data sets, weights, scripts
    names = sorted({p.name.rsplit("_", 1)[0] for p in (ROOT / "data").glob("*_*.jsonl")})
    assert rest.strip() == f"{names} 200 {in_repository}"


@pytest.mark.once
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_alone_in_a_fresh_environment(path, colab, tmp_path):
    python, _ = colab
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(MPLBACKEND="Agg", KERAS_BACKEND="jax", PIP_NO_INDEX="1")
    done = subprocess.run([str(python), "-c", RUNNER, str(copy), TEST_PARAMETERS.get(path.name, ""), WHERE_FROM],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    notebook = nbformat.read(copy, as_version=4)
    failed = lessons.errors(notebook)
    assert done.returncode == 0 and not failed, (failed, done.stderr[-3000:])
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".ipynb") == [path.name]
    where = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    assert f"python {python.parent.parent}" in where and str(ROOT) not in where, where
    assert any(cell.get("outputs") for cell in notebook.cells[:-1] if cell.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_stored_outputs_are_fresh_clean_and_small(path):
    notebook = nbformat.read(path, as_version=4)
    stale = lessons.stale_cells(notebook)
    assert not stale, f"{path.name}: {stale}; run `make lessons` (scripts/lessons.py run {path.relative_to(ROOT)})"
    assert path.stat().st_size <= lessons.MAX_BYTES
    outputs = json.dumps([cell.get("outputs", []) for cell in notebook.cells])
    for machine_path in (str(ROOT), str(Path.home()), sysconfig.get_paths()["purelib"]):
        assert machine_path not in outputs, f"{path.name} shows {machine_path}"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code), f"{path.name} has cells that did not run"
    first = next(output for cell in code for output in cell.get("outputs", []))
    assert "'gemma-kit':" in first.get("text", ""), f"{path.name}'s first output is not gemma_kit.versions()"


def test_every_lesson_installs_the_same_way_from_the_one_repository_address():
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    cells = {path.name: setup_cell(nbformat.read(path, as_version=4)) for path in NOTEBOOKS}
    assert len(set(cells.values())) == 1, "the lessons' set-up cells differ"
    cell = cells[NOTEBOOKS[0].name]
    assert f'GEMMA_KIT_REPOSITORY = "git+{repository}.git"' in cell
    assert "pip install gemma-kit" not in cell and '"gemma-kit"' not in cell   # never a stranger's PyPI package
    assert f"git+{repository}.git" in (ROOT / "README.md").read_text()


def test_every_lesson_is_collected():
    assert any(p.name == "01_text_generation.ipynb" for p in NOTEBOOKS)
    assert set(TEST_PARAMETERS) <= {p.name for p in NOTEBOOKS}, "TEST_PARAMETERS names a notebook that does not exist"


def test_the_readme_lists_every_lesson_with_its_measured_run_time():
    """The README's lessons table says how long each lesson takes here: the run time `make lessons` stamped."""
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[-2].strip()
            for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")}
    for path in NOTEBOOKS:
        seconds = nbformat.read(path, as_version=4).metadata["gemma_kit"]["run_seconds"]
        assert path.stem in rows, f"README.md's lessons table has no row for {path.stem}"
        stated = rows[path.stem].rstrip(" *")
        assert stated == f"{max(1, round(seconds / 60))} min", (path.stem, stated, seconds)
