"""The rendered course (``make site``, ``scripts/build_site.py``) in a real browser, offline.

The site is built from the repository's notebooks into a temporary folder, served by ``http.server`` on
127.0.0.1 (a free port, in a thread), and opened by Debian's Chromium through Playwright (the ``chromium``
fixture of ``conftest.py``). Every page is checked for

- images: every ``<img>`` loaded (``complete`` and ``naturalWidth > 0``), and a lesson page shows as many
  output images as its notebook stores (widget pictures included, once made static);
- errors: no console error, no uncaught exception, no failed request or HTTP error, and no request to any
  host but the local server (the site must work offline);

while the footer's next links walk the whole course (home -> lessons 1..N -> the layout notes; every
previous link points one page back, and one is followed). From the home page, the sidebar link of each
lesson opens that lesson.
A notebook without a measured run time stops the build with its name in the message.
"""

import functools
import http.server
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BUILDER = ROOT / "scripts" / "build_site.py"
sys.path.insert(0, str(ROOT / "scripts"))
from static_widgets import make_widgets_static  # noqa: E402

LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
IMAGE_MIMES = ("image/png", "image/jpeg")                # drawn as <img> (nbconvert inlines SVG)


def _title(notebook: dict) -> str:
    first = next(cell for cell in notebook["cells"] if cell["cell_type"] == "markdown")
    return "".join(first["source"]).strip().splitlines()[0].lstrip("# ").strip()


def _stored_images(notebook: dict) -> int:
    make_widgets_static(notebook)                            # as the builder does: widget pictures count too
    return sum(any(mime in output.get("data", {}) for mime in IMAGE_MIMES)
               for cell in notebook["cells"] for output in cell.get("outputs", []))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    built = subprocess.run([sys.executable, str(BUILDER), "--notebooks", str(NOTEBOOKS), "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    print("\n" + built.stdout.strip())
    return out


@pytest.fixture(scope="module")
def url(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A page whose console errors, uncaught exceptions, failed and foreign requests are recorded."""

    def __init__(self, browser, url):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.problems = []
        origin = url + "/"
        page = self.page
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text} ({page.url})"))
        page.on("pageerror", lambda e: self.problems.append(f"exception: {e} ({page.url})"))
        page.on("requestfailed", lambda r: "ERR_ABORTED" in (r.failure or "")      # cut short by leaving the page
                or self.problems.append(f"failed: {r.url[:100]} {r.failure} ({page.url})"))
        page.on("response", lambda r: r.status >= 400
                and self.problems.append(f"HTTP {r.status}: {r.url} ({page.url})"))
        page.on("request", lambda r: r.url.startswith(("data:", "blob:", origin))
                or self.problems.append(f"foreign request: {r.url[:100]} ({page.url})"))

    def broken_images(self) -> list:
        return self.page.evaluate("""() => [...document.images]
            .filter(img => !(img.complete && img.naturalWidth > 0))
            .map(img => (img.getAttribute('src') || '').slice(0, 80))""")


def _lessons() -> list:
    """[(page address, title)] of the lessons, in course order."""
    return [(f"lessons/{path.stem}.html", _title(json.loads(path.read_text(encoding="utf-8")))) for path in LESSONS]


@pytest.mark.once
def test_next_links_walk_every_page_whose_images_load_with_no_error_and_nothing_from_the_network(site, url, browser):
    titles = dict(_lessons())
    course = ["index.html"] + list(titles) + ["architecture.html"]
    built = sorted(str(path.relative_to(site)) for path in site.rglob("*.html") if path.name != "404.html")
    assert sorted(course) == built, f"pages outside the navigation, or missing: {built}"
    stored = {f"lessons/{path.stem}.html": _stored_images(json.loads(path.read_text(encoding="utf-8")))
              for path in LESSONS}
    watched = Watched(browser, url)
    page = watched.page
    page.goto(f"{url}/index.html")
    for number, here in enumerate(course):
        page.wait_for_url(f"{url}/{here}", wait_until="load")
        if here in titles:
            assert page.locator("h1").first.inner_text().rstrip("¶").strip() == titles[here]
        broken = watched.broken_images()
        assert not broken, f"{here}: images that did not load: {broken}"
        shown = page.locator(".jp-OutputArea-output img").count()
        assert shown == stored.get(here, 0), f"{here}: {stored.get(here)} images stored, {shown} on the page"
        previous = page.locator("a.md-footer__link--prev")
        if number == 0:
            assert previous.count() == 0, "the home page has a previous link"
        else:
            assert previous.evaluate("a => a.href") == f"{url}/{course[number - 1]}"
        if number + 1 < len(course):
            page.locator("a.md-footer__link--next").click()
    assert page.locator("a.md-footer__link--next").count() == 0, "the last page has a next link"
    page.locator("a.md-footer__link--prev").click()                  # and a previous link is followed too
    page.wait_for_url(f"{url}/{course[-2]}", wait_until="load")
    page.close()
    assert not watched.problems, "\n".join(watched.problems)


@pytest.mark.once
def test_the_home_pages_sidebar_opens_every_lesson(url, browser):
    watched = Watched(browser, url)
    page = watched.page
    page.goto(f"{url}/index.html")
    for address, _ in _lessons():                                     # the walk above checks each page's title
        page.locator(f"nav.md-nav--primary a.md-nav__link[href$='{address}']").first.click()
        page.wait_for_url(f"{url}/{address}", wait_until="commit")
        page.go_back(wait_until="commit")                             # to the home page
        assert page.url == f"{url}/index.html"
    page.close()
    assert not watched.problems, "\n".join(watched.problems)


@pytest.mark.once
def test_a_notebook_without_a_measured_run_time_stops_the_build_by_name(tmp_path):
    notebook = json.loads(LESSONS[0].read_text(encoding="utf-8"))
    notebook["metadata"].pop("gemma_kit", None)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / LESSONS[0].name).write_text(json.dumps(notebook), encoding="utf-8")
    built = subprocess.run([sys.executable, str(BUILDER), "--notebooks", str(tmp_path / "notebooks"),
                            "--out", str(tmp_path / "site")], capture_output=True, text=True, timeout=120)
    assert built.returncode == 1 and not (tmp_path / "site").exists()
    named = rf"{re.escape(LESSONS[0].name)}: metadata\['gemma_kit'\]\['run_seconds'\] is missing"
    assert re.search(named, built.stderr), built.stderr
