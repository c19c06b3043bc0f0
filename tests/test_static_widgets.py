"""Widget outputs stored as what they showed (scripts/static_widgets.py, used by `make lessons` and `make site`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from static_widgets import WIDGET_STATE, WIDGET_VIEW, make_widgets_static  # noqa: E402


def _tqdm(bar_style, value):
    """A notebook with one tqdm bar as ipywidgets saves it: an HBox of HTML, FloatProgress, HTML."""
    models = {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_pre", "IPY_MODEL_bar", "IPY_MODEL_post"]}},
        "pre": {"model_name": "HTMLModel", "state": {"value": "Loading x.gguf: 100%" if value == 236 else "Loading x.gguf:  99%"}},
        "bar": {"model_name": "FloatProgressModel", "state": {"value": value, "max": 236, "bar_style": bar_style}},
        "post": {"model_name": "HTMLModel", "state": {"value": f" {value}/236 [00:09&lt;00:00]"}},
    }
    output = {"output_type": "display_data", "metadata": {},
              "data": {WIDGET_VIEW: {"model_id": "box", "version_major": 2}, "text/plain": "HBox(...)"}}
    return {"cells": [{"cell_type": "code", "outputs": [output]}],
            "metadata": {"widgets": {WIDGET_STATE: {"state": models}}}}


def test_a_kept_progress_bar_shows_its_last_frame_as_text():
    notebook = _tqdm("success", 236)
    assert make_widgets_static(notebook) == 1
    [output] = notebook["cells"][0]["outputs"]
    assert output["data"] == {"text/plain": "Loading x.gguf: 100% 236/236 [00:09<00:00]"}
    assert "widgets" not in notebook["metadata"]          # no widget state left for a page to load code for


def test_a_bar_closed_with_leave_false_is_gone_as_in_the_live_notebook():
    notebook = _tqdm("", 234)                             # its last throttled frame, never shown at the end
    assert make_widgets_static(notebook) == 1
    assert notebook["cells"][0]["outputs"] == []


def test_a_widget_without_saved_state_becomes_a_note_naming_the_progress_bar():
    notebook = _tqdm("success", 236)
    notebook["metadata"] = {}
    notebook["cells"][0]["outputs"][0]["data"]["text/plain"] = "Loading x.gguf:   0%|          | 0/236 [00:00<?]"
    make_widgets_static(notebook)
    [output] = notebook["cells"][0]["outputs"]
    assert "Loading x.gguf" in "".join(output["data"]["text/markdown"]) and "0%" not in str(output["data"])
