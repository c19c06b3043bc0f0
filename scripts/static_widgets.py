"""Turn a notebook's ipywidgets outputs into static outputs that a web page can show without a kernel.

A widget output (``application/vnd.jupyter.widget-view+json``) holds only a model id; the widget itself
lives in the notebook's saved widget state (``metadata.widgets``), which JupyterLab draws with the
ipywidgets JavaScript. A static site has no kernel, and that JavaScript would come from a CDN, so
``build_site.py`` replaces every widget output with what the saved state says it showed:

- an ``ImageModel`` (lesson 5's attention explorer draws its picture into one) becomes an ``image/png``
  (or ``image/jpeg``) output: the picture as it was saved;
- ``HTML`` and ``Label`` values become one line of text (a tqdm progress bar: "Loading ...: 100% 236/236");
  a tqdm bar closed with ``leave=False`` becomes nothing, as in the live notebook;
- the controls (sliders, drop-downs, toggle buttons) become one note, "an interactive widget, saved at
  layer 0, head mean over heads, ...", saying where its controls work;
- a widget with no saved state (``scripts/lessons.py`` drops it) becomes a note alone: its ``text/plain``
  fallback is the widget's repr at display time ("VBox(children=...", a progress bar at 0%), which would
  mislead; a tqdm progress bar is named by its description.

Then ``metadata.widgets`` is dropped, so the page loads no widget code.
"""

from __future__ import annotations

import html
import re

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
IMAGE_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}
TEXT_MODELS = {"HTMLModel", "HTMLMathModel", "LabelModel"}
# tqdm styles the bar it keeps when done "success" (or "danger" when it stopped short); a bar it closed
# (leave=False) keeps no style and its last throttled frame (say 99%): a live notebook no longer shows it.
PROGRESS_MODELS = {"FloatProgressModel", "IntProgressModel"}
NOTE = ("*An interactive widget{saved}. Its controls work when you run the notebook "
        "(JupyterLab, Colab, VS Code); this page shows it as it was saved.*")
UNSAVED_NOTE = "*An interactive widget: it appears here when you run the notebook (JupyterLab, Colab, VS Code).*"
PROGRESS_NOTE = "*A progress bar (`{description}`) appears here when you run the notebook.*"
TQDM_TEXT = re.compile(r"(?P<description>[^\n|]*?):?\s+\d+%\|")      # "Loading x.gguf:   0%|   | 0/236 [...]"


def _model(states: dict, reference: str) -> dict | None:
    return states.get(reference.removeprefix("IPY_MODEL_"))


def _control_value(state: dict) -> str | None:
    """The value a control shows: the label of its selected option, or its value (None: not a control)."""
    labels, index = state.get("_options_labels"), state.get("index")
    if labels is not None:
        if isinstance(index, int) and 0 <= index < len(labels):
            return labels[index]
        return None
    if state.get("_view_name", "").endswith(("SliderView", "CheckboxView", "TextView", "ToggleButtonView")):
        return str(state.get("value"))
    return None


def _walk(states: dict, reference: str, parts: dict) -> None:
    """Collect the pictures, texts and control values of a widget and its children, in display order."""
    model = _model(states, reference)
    if model is None:
        return
    name, state = model.get("model_name", ""), model.get("state", {})
    if name == "ImageModel":
        mime = IMAGE_FORMATS.get(str(state.get("format", "png")).lower())
        for buffer in model.get("buffers", []):
            if mime and buffer.get("path") == ["value"] and buffer.get("encoding") == "base64":
                parts["images"].append({mime: buffer["data"]})
    elif name in PROGRESS_MODELS:
        parts["progress_styles"].append(state.get("bar_style", ""))
    elif name in TEXT_MODELS:
        text = html.unescape(re.sub(r"<[^>]+>", "", str(state.get("value", "")))).strip()
        description = str(state.get("description", "")).strip()
        if text or description:
            parts["texts"].append(f"{description} {text}".strip())
    else:
        value = _control_value(state)
        if value is not None:
            label = str(state.get("description", "")).strip()
            parts["controls"].append(f"{label} {value}".strip())
    for child in state.get("children", []):
        _walk(states, child, parts)


def _note(text: str) -> dict:
    return {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": text}}


def static_outputs(output: dict, states: dict) -> list[dict]:
    """The static outputs that replace one widget output (``states``: model id -> saved model)."""
    reference = output["data"][WIDGET_VIEW].get("model_id", "")
    if _model(states, reference) is None:                    # no saved state: a note, naming a progress bar
        fallback = output["data"].get("text/plain", "")
        progress = TQDM_TEXT.match("".join(fallback) if isinstance(fallback, list) else fallback)
        return [_note(PROGRESS_NOTE.format(**progress.groupdict()) if progress else UNSAVED_NOTE)]
    parts = {"images": [], "texts": [], "controls": [], "progress_styles": []}
    _walk(states, reference, parts)
    if parts["progress_styles"] and not any(parts["progress_styles"]):
        return []      # a tqdm bar with leave=False: closed when done, gone from the live notebook too
    shown = parts["images"] + ([{"text/plain": " ".join(parts["texts"])}] if parts["texts"] else [])
    outputs = [{"output_type": "display_data", "metadata": {}, "data": data} for data in shown]
    if parts["controls"] or not outputs:                   # controls, or nothing a page can show: say so
        saved = f", saved at {', '.join(parts['controls'])}" if parts["controls"] else ""
        outputs.insert(0, _note(NOTE.format(saved=saved)))
    return outputs


def make_widgets_static(notebook: dict) -> int:
    """Replace every widget output of ``notebook`` (an nbformat 4 dict, changed in place); return how many."""
    widgets = notebook.get("metadata", {}).pop("widgets", {})
    states = widgets.get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                outputs.extend(static_outputs(output, states))
                replaced += 1
            else:
                outputs.append(output)
        cell["outputs"] = outputs
    return replaced
