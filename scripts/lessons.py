"""Lessons shipped with their outputs: run each notebook at its default parameters, clean it, stamp it.

    python scripts/lessons.py run                          # every lesson (`make lessons`)
    python scripts/lessons.py run notebooks/05_*.ipynb     # some lessons
    python scripts/lessons.py check                        # exit 1 when a stored output is stale

GitHub, Colab and the course site (``make site``) show a notebook's stored outputs, so a learner
sees every figure and number before running anything. ``run`` does four things to each lesson:

1. executes it as a learner would, at its default parameters, in an empty temporary folder (so
   no output can depend on the repository around it);
2. cleans the outputs: machine paths, temporary folders, timestamps and memory addresses become
   placeholders (``<site-packages>``, ``<tmp>``, ``<time>``, ``0x…``), a progress bar keeps its
   last frame, widgets become what they showed when saved (``static_widgets.py``: GitHub and
   a static page have no kernel to draw them), and per-cell timings are dropped;
3. stamps every code cell with ``metadata.gemma_kit.source_sha256``, the hash of the source that
   made its outputs, and the notebook with ``metadata.gemma_kit.run_seconds`` (the site's home
   page shows it);
4. refuses to store a notebook over ``MAX_BYTES``.

``check`` (and ``tests/test_notebooks.py``) fail when a code cell's source no longer has the hash
its outputs were made with: edit a lesson, and ``make lessons`` must run before it ships.
"""

from __future__ import annotations

import hashlib
import os
import re
import site
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from static_widgets import make_widgets_static   # scripts/static_widgets.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MAX_BYTES = 2_000_000
CELL_TIMEOUT_S = 1800


def source_sha256(cell) -> str:
    return hashlib.sha256(cell.source.encode()).hexdigest()[:16]


def stale_cells(notebook) -> list:
    """``[(code cell number, reason)]`` for every code cell whose stored outputs its source did not make."""
    stale = []
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code_cells, 1):
        stamped = cell.get("metadata", {}).get("gemma_kit", {}).get("source_sha256")
        if stamped is None:
            stale.append((number, "was never run by `make lessons`"))
        elif stamped != source_sha256(cell):
            stale.append((number, "changed after its outputs were made"))
    if "run_seconds" not in notebook.metadata.get("gemma_kit", {}):
        stale.append((0, "the notebook has no run time (metadata.gemma_kit.run_seconds)"))
    return stale


# What a stored output must not show: this machine's folders, wall-clock times, object addresses.
def _placeholders():
    folders = {str(Path(p)): "<site-packages>" for p in site.getsitepackages() + [site.getusersitepackages()]}
    folders[str(ROOT)] = "<repo>"
    folders[str(Path.home())] = "~"
    return sorted(folders.items(), key=lambda kv: -len(kv[0]))      # the longest folder first


_PLACEHOLDERS = _placeholders()                                     # once, not per output
_TMP = re.compile(re.escape(tempfile.gettempdir()) + r"/[\w.-]+")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
                        r"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT"
                        r"|\b1[6-9]\d{8}\.\d+\b")                     # Unix time in seconds (a log's "time" field)
_ADDRESS = re.compile(r"\b(at|id=) 0x[0-9a-fA-F]{6,}\b")
# C++ loggers' start-up lines (absl/glog: level, date, time, thread, file:line), e.g. TensorFlow's
# "I0000 00:00:1796203335.689954  28291 cudart_stub.cc:31] Could not find cuda drivers": noise, with a clock in it.
_NATIVE_LOG = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\] .*"
                         r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)\n?",
                         re.MULTILINE)


def clean_text(text: str) -> str:
    for folder, placeholder in _PLACEHOLDERS:
        text = text.replace(folder, placeholder)
    text = _TMP.sub("<tmp>", text)
    text = _TIMESTAMP.sub("<time>", text)
    text = _ADDRESS.sub(lambda m: f"{m.group(1)} 0x…", text)
    return text


def last_frames(text: str) -> str:
    """A progress bar redraws its line with carriage returns: keep the frame a learner saw last."""
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def clean(notebook) -> None:
    make_widgets_static(notebook)    # a progress bar's last frame, a widget's saved picture; the live state goes
    for cell in notebook.cells:                            # (it writes plain dicts: make them nbformat nodes)
        if "outputs" in cell:
            cell.outputs = [nbformat.from_dict(output) for output in cell.outputs]
    for cell in notebook.cells:
        cell.get("metadata", {}).pop("execution", None)    # per-cell wall-clock times
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = clean_text(last_frames(_NATIVE_LOG.sub("", output["text"])))
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    output["data"][mime] = clean_text(value)
        if "outputs" in cell:                              # a stream left empty by the filters goes
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "stream" or o["text"].strip()]


def errors(notebook) -> list:
    return [f"{output.get('ename')}: {output.get('evalue')}" for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if output.get("output_type") == "error"]


def run(path: Path) -> float:
    """Execute one lesson at its defaults, clean and stamp it, store it; returns the run time in seconds."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "PYTHONPATH")}   # inline figures
    env["KERAS_BACKEND"] = "jax"                                                          # the lessons' default
    with tempfile.TemporaryDirectory(prefix="lesson-") as folder:
        client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3", record_timing=False, coalesce_streams=True,
                                resources={"metadata": {"path": folder}})
        started = time.perf_counter()
        client.execute(env=env)
        seconds = time.perf_counter() - started
    failed = errors(notebook)
    if failed:
        raise RuntimeError(f"{path.name} failed at its default parameters, not stored: {failed}")
    clean(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.metadata.setdefault("gemma_kit", {})["source_sha256"] = source_sha256(cell)
    notebook.metadata["gemma_kit"] = {"run_seconds": round(seconds, 1)}
    text = nbformat.writes(notebook) + "\n"
    if len(text.encode()) > MAX_BYTES:
        raise RuntimeError(f"{path.name} would be {len(text.encode()) / 1e6:.1f} MB with its outputs "
                           f"(at most {MAX_BYTES / 1e6:.0f} MB): make its figures smaller, not stored")
    path.write_text(text)
    return seconds


def main(argv) -> int:
    if not argv or argv[0] not in ("run", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    paths = [Path(p).resolve() for p in argv[1:]] or sorted(NOTEBOOKS.glob("*.ipynb"))
    if argv[0] == "run":
        for path in paths:
            print(f"{path.name}: running at its default parameters ...", file=sys.stderr, flush=True)
            seconds = run(path)
            print(f"{path.name}: {seconds:.0f} s, {path.stat().st_size / 1e6:.2f} MB stored", file=sys.stderr)
        return 0
    stale = {path.name: stale_cells(nbformat.read(path, as_version=4)) for path in paths}
    for name, cells in stale.items():
        for number, reason in cells:
            print(f"{name}: code cell {number} {reason}", file=sys.stderr)
    return 1 if any(stale.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
