"""Lesson 5 in a real browser: JupyterLab on 127.0.0.1 driven by Debian's Chromium through Playwright.

The session's set-up installs what it needs from the machine's own package sources, never at
test time from the web: ``apt-get install -y chromium`` when ``/usr/bin/chromium`` is missing
(``apt-get update`` first only if that fails for lack of package lists), and Playwright is the
``playwright`` pip package driving that executable (no ``playwright install`` download).

The test copies ``notebooks/05_attention_visualization.ipynb`` as it is (the learner's defaults,
no test parameters) into a temporary folder, serves it with ``jupyter lab`` (a free port, a
token, no browser; always stopped), opens it, runs every cell from the **Run > Run All Cells**
menu, and waits until every code cell has an execution number. Then it checks that

- no cell shows an error (an ``error`` output, or a stderr output with a traceback);
- the static figures rendered (``image/png`` outputs) and the explorer widget rendered
  (its controls and its picture, with no "Error displaying widget" message);
- moving the explorer's **layer** slider with the keyboard (focus the handle, press the
  right arrow) changes the slider's readout and the picture: a screenshot of the picture
  before and after differs in at least 1% of its pixels.
"""

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_attention_visualization.ipynb"
RUN_ALL_TIMEOUT_S = 200


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder):
    """User settings for this server only: every cell stays in the page, no news or update pop-ups."""
    files = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
             "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                 {"fetchNews": "false", "checkForUpdates": False}}
    for name, values in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)                     # the server autosaves outputs: not in the repo
    _settings(root / ".settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, KERAS_BACKEND="jax", JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"), JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    env.pop("MPLBACKEND", None)                                     # the notebook's own (inline) backend
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
               "--ServerApp.port_retries=0"]
    log = open(root / "server.log", "w")
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, \
                    "jupyter lab did not start:\n" + (root / "server.log").read_text()[-3000:]
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _all_cells_ran(page):
    """True when every code cell shows an execution number, e.g. "[12]:"."""
    return page.evaluate("""() => {
        const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
        return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p));
    }""")


def _state(page, folder):
    """For a failure message: the prompts of the code cells, and a screenshot of the page."""
    shot = folder / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
    return f"prompts {prompts}; screenshot {shot}"


def _pixels(png):
    return mpimg.imread(io.BytesIO(png), format="png")[..., :3]


@pytest.mark.once
def test_lesson_5_runs_in_chromium_and_the_layer_slider_redraws(chromium, jupyter_lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, token = jupyter_lab
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
            page.get_by_text("Python 3 (ipykernel) | Idle").first.wait_for(timeout=90_000)   # the kernel is up

            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            run_all = page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first
            run_all.wait_for(state="visible")
            run_all.click()
            page.get_by_text("[1]:").first.wait_for(timeout=60_000)                 # the first cell ran
            deadline = time.monotonic() + RUN_ALL_TIMEOUT_S
            while not _all_cells_ran(page):
                assert time.monotonic() < deadline, "the notebook did not finish in time: " + _state(page, tmp_path)
                page.wait_for_timeout(1000)

            errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']").count()
            stderr = [text for text in page.locator(
                ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
                if "Traceback" in text or "Error" in text]
            assert errors == 0 and not stderr, f"a cell shows an error: {stderr[:1]}"
            assert page.locator(".jp-RenderedImage img").count() >= 6            # the static figures
            assert page.get_by_text("Error displaying widget").count() == 0

            picture = page.locator("img.widget-image").first
            picture.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            before, source = picture.screenshot(), picture.get_attribute("src")
            slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text="layer")).first
            readout = slider.locator(".widget-readout")
            assert readout.inner_text().strip() == "0"
            handle = slider.locator(".noUi-handle").first
            handle.focus()
            for _ in range(3):
                handle.press("ArrowRight")
            deadline = time.monotonic() + 30
            while picture.get_attribute("src") == source:                    # the kernel redraws, then sends it
                assert time.monotonic() < deadline, "the picture did not change after moving the layer slider"
                page.wait_for_timeout(250)
            page.wait_for_timeout(500)
            after = picture.screenshot()
            assert readout.inner_text().strip() == "3"
            a, b = _pixels(before), _pixels(after)
            assert a.shape == b.shape
            changed = np.mean(np.any(np.abs(a - b) > 0.02, axis=-1))
            print(f"\nlayer slider 0 -> 3: {changed:.1%} of the picture's pixels changed")
            assert changed > 0.01
        finally:
            browser.close()
