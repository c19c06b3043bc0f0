"""Every lesson notebook runs top to bottom on the CPU (the Makefile runs these once, on JAX).

A lesson's defaults are what a learner runs (minutes of training, say). The suite
runs the same code with smaller numbers: as papermill does, it inserts a cell
right after the cell tagged ``parameters`` that overrides some of them.
"""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

# notebook file name -> source of the cell inserted after its "parameters" cell.
# Only numbers that make the run shorter belong here; the code path must be the learner's.
TEST_PARAMETERS = {
    "02_lora_tuning.ipynb": "TRAIN_STEPS = 2\nSTEPS_PER_CHECKPOINT = 1\nBATCH_SIZE = 2\nEVAL_EXAMPLES = 4\nMAX_NEW_TOKENS = 4\n",
    "03_distributed_training.ipynb": "STEPS = 3",
    "04_vertex_ai_deployment.ipynb": "MAX_TOKENS = 8\nCLIENTS = 4",
    "05_attention_visualization.ipynb": "LONG_TOKENS = 520",
    "09_fast_decode.ipynb": "NEW_TOKENS = 8\nROUNDS = 1\nBF16_TOKENS = 2\nDRAFT_LENGTHS = (2,)\nCHAT_TURNS = 2\nCHAT_TOKENS = 4",
}


def with_test_parameters(notebook, name):
    override = TEST_PARAMETERS.get(name)
    if override is None:
        return notebook
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert tagged, f"{name} has test parameters but no cell tagged 'parameters'"
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell("# Inserted by tests/test_notebooks.py\n" + override))
    return notebook


@pytest.mark.once
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    notebook = with_test_parameters(nbformat.read(path, as_version=4), path.name)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=dict(os.environ, MPLBACKEND="Agg"))
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors
    assert any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_every_lesson_is_collected():
    assert any(p.name == "01_text_generation.ipynb" for p in NOTEBOOKS)
    assert set(TEST_PARAMETERS) <= {p.name for p in NOTEBOOKS}, "TEST_PARAMETERS names a notebook that does not exist"
