"""Build the course as a static web site: every lesson from its stored outputs, a home page, the layout notes.

    python scripts/build_site.py                                  # notebooks/ -> build/site/  (make site)
    python scripts/build_site.py --notebooks DIR --out DIR

Nothing is executed: each lesson page shows what its notebook stored when ``make lessons`` last ran it.
The builder

1. reads each ``notebooks/NN_*.ipynb``: its title (the first markdown cell's ``# Lesson N: ...``), the run time
   that ``make lessons`` recorded in ``metadata["gemma_kit"]["run_seconds"]`` (it stops, naming the notebook,
   when that is missing: a run time on the home page is measured, never guessed), and what it needs from
   ``docs/site/lessons.yml``;
2. copies the notebooks into a folder of pages (never writing into ``notebooks/``), with their widget outputs
   made static (``static_widgets.py``: a page has no kernel, and widget code would come from a CDN);
3. writes the home page (``docs/site/index.md`` with the table of lessons) and ``docs/ARCHITECTURE.md``;
4. builds ``mkdocs.yml`` (mkdocs-material, mkdocs-jupyter with ``execute: false``) with the lesson navigation;
   a hook (``NotebookPages``) removes the MathJax and Mermaid loaders that nbconvert points at a CDN (the
   lessons have no formulas or diagrams) and moves JupyterLab's CSS out of every page into shared files;
5. checks that no built page loads anything from another host, so the site works offline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# jsonschema (under nbformat) builds 38 parsers for its "iri" format check when rfc3987_syntax is installed:
# seconds per build, for a check nbformat never makes. Without the module, jsonschema skips that check.
sys.modules.setdefault("rfc3987_syntax", None)

import yaml  # noqa: E402
from mkdocs.commands.build import build  # noqa: E402
from mkdocs.config import load_config  # noqa: E402
from mkdocs.exceptions import MkDocsException  # noqa: E402
from mkdocs.plugins import BasePlugin  # noqa: E402

from static_widgets import make_widgets_static  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SITE_SOURCES = ROOT / "docs" / "site"                  # index.md (the home page), lessons.yml (what each needs)
LESSONS_MARKER = "<!-- lessons -->"
TITLE = re.compile(r"#\s+(?:Lesson\s+(\d+)\s*:\s*)?(.+)")
# nbconvert's <head> scripts for MathJax (an empty src here) and Mermaid (imported from cdnjs on demand).
CDN_SCRIPTS = re.compile(r"<!-- Load mathjax -->\s*<script src=\"[^\"]*\">\s*</script>\s*"
                         r"|<!-- MathJax configuration -->.*?<!-- End of mathjax configuration -->\s*"
                         r"|<script type=\"module\">(?:(?!</script>).)*cdnjs[^\n]*mermaid"
                         r"(?:(?!</script>).)*</script>\s*", re.DOTALL)
BIG_STYLE = re.compile(r"<style[^>]*>([^<]{2000,})</style>")    # JupyterLab's CSS, the same on every lesson page
# What a browser fetches by itself: src= of scripts, images, frames; href= of stylesheets, icons, preloads.
EXTERNAL_LOAD = re.compile(r"<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc=\"(?:https?:)?//[^\"]+\""
                           r"|<link\b[^>]*\bhref=\"(?:https?:)?//[^\"]+\"|url\((?:'|\")?(?:https?:)?//[^)]+\)")


class BuildError(Exception):
    """The site cannot be built from these inputs (the message names the file and what is wrong)."""


@dataclass
class Lesson:
    path: Path                  # the notebook in notebooks/
    number: int
    what: str                   # the title without "Lesson N: "
    run_seconds: float
    default: str                # what it runs on with its default parameters
    further: str                # where its parameter cell can take it

    @property
    def page(self) -> str:      # its page in the site's sources
        return f"lessons/{self.path.name}"


def read_lesson(path: Path, needs: dict) -> Lesson:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    markdown = [cell for cell in notebook.get("cells", []) if cell.get("cell_type") == "markdown"]
    first_line = "".join(markdown[0]["source"]).strip().splitlines()[0] if markdown else ""
    title = TITLE.fullmatch(first_line.strip())
    if title is None:
        raise BuildError(f"{path}: the first markdown cell must start with a title '# Lesson N: ...', "
                         f"found {first_line[:60]!r}")
    run_seconds = notebook.get("metadata", {}).get("gemma_kit", {}).get("run_seconds")
    if isinstance(run_seconds, bool) or not isinstance(run_seconds, (int, float)) or run_seconds <= 0:
        raise BuildError(f"{path}: metadata['gemma_kit']['run_seconds'] is missing or not a positive number "
                         f"(found {run_seconds!r}); `make lessons` measures it when it runs the notebook")
    need = needs.get(path.stem)
    if not isinstance(need, dict) or not need.get("default") or not need.get("further"):
        raise BuildError(f"{SITE_SOURCES / 'lessons.yml'}: no 'default' and 'further' for {path.stem} "
                         f"(say what {path.name} runs on)")
    number = int(title.group(1) or path.name.split("_")[0])
    return Lesson(path, number, title.group(2).strip(), float(run_seconds), need["default"], need["further"])


def read_lessons(notebooks: Path) -> list[Lesson]:
    paths = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise BuildError(f"{notebooks}: no lesson notebooks (NN_name.ipynb) in this folder")
    needs = yaml.safe_load((SITE_SOURCES / "lessons.yml").read_text(encoding="utf-8")) or {}
    return [read_lesson(path, needs) for path in paths]


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 100 else f"{seconds / 60:.0f} min"


def lessons_table(lessons: list[Lesson]) -> str:
    rows = ["| lesson | runs on | time | further |", "| --- | --- | --- | --- |"]
    for lesson in lessons:
        rows.append(f"| **{lesson.number}.** [{lesson.what}]({lesson.page}) | {lesson.default} | "
                    f"{duration(lesson.run_seconds)} | {lesson.further} |")
    return "\n".join(rows)


def write_pages(lessons: list[Lesson], pages: Path) -> int:
    """The site's sources: the home page, the lessons (widgets made static), the layout notes. Returns #widgets."""
    home = (SITE_SOURCES / "index.md").read_text(encoding="utf-8")
    if LESSONS_MARKER not in home:
        raise BuildError(f"{SITE_SOURCES / 'index.md'}: the marker {LESSONS_MARKER} (where the table goes) "
                         "is missing")
    (pages / "lessons").mkdir(parents=True)
    (pages / "index.md").write_text(home.replace(LESSONS_MARKER, lessons_table(lessons)), encoding="utf-8")
    shutil.copy(ROOT / "docs" / "ARCHITECTURE.md", pages / "architecture.md")
    widgets = 0
    for lesson in lessons:
        notebook = json.loads(lesson.path.read_text(encoding="utf-8"))
        widgets += make_widgets_static(notebook)
        (pages / lesson.page).write_text(json.dumps(notebook, indent=1, ensure_ascii=False), encoding="utf-8")
    return widgets


def navigation(lessons: list[Lesson]) -> list:
    """The sidebar, and the order of the previous / next links: home, the lessons (titled by their notebook's
    first heading), the layout notes."""
    return [{"Home": "index.md"}, {"Lessons": [lesson.page for lesson in lessons]},
            {"How the kit is laid out": "architecture.md"}]


class NotebookPages(BasePlugin):
    """An mkdocs hook for the lesson pages: drop nbconvert's CDN loaders, and move the 600 kB of JupyterLab CSS
    that nbconvert puts in every page into shared files (assets/notebook/<hash>.css), cached by the browser."""

    def on_page_content(self, output: str, page, config, files) -> str:    # before the search plugin reads it
        output = CDN_SCRIPTS.sub("", output)
        up = "../" * page.file.url.count("/")                           # from the page back to the site's root

        def shared(style: re.Match) -> str:
            name = f"assets/notebook/{hashlib.sha1(style.group(1).encode()).hexdigest()[:12]}.css"
            path = Path(config.site_dir) / name
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(style.group(1), encoding="utf-8")
            return f'<link rel="stylesheet" href="{up}{name}">'
        return BIG_STYLE.sub(shared, output)


def external_loads(site: Path) -> list[str]:
    """Every reference in the built pages that would make a browser fetch from another host."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix in (".html", ".css"):
            text = path.read_text(encoding="utf-8")
            found += [f"{path.relative_to(site)}: {m.group(0)[:120]}" for m in EXTERNAL_LOAD.finditer(text)]
    return found


def check_out(out: Path) -> None:
    """mkdocs empties the site folder first: refuse a folder that holds anything but an earlier site."""
    if out.exists() and any(out.iterdir()) and not ((out / "index.html").is_file() and (out / "assets").is_dir()):
        raise BuildError(f"{out}: not empty and not an earlier site (no index.html and assets/): "
                         "building there would delete its files; give another --out")


def build_site(notebooks: Path, out: Path) -> dict:
    check_out(out)
    lessons = read_lessons(notebooks)
    with tempfile.TemporaryDirectory(prefix="gemma_kit_site_") as folder:
        pages = Path(folder) / "pages"
        widgets = write_pages(lessons, pages)
        config = load_config(str(ROOT / "mkdocs.yml"), docs_dir=str(pages), site_dir=str(out.resolve()),
                             nav=navigation(lessons))
        config.plugins["gemma-kit-notebook-pages"] = NotebookPages()
        config.plugins.on_startup(command="build", dirty=False)
        try:
            build(config)
        except MkDocsException as error:                                # strict: a warning above is the cause
            raise BuildError(f"mkdocs stopped: {error}") from None
        finally:
            config.plugins.on_shutdown()
    loads = external_loads(out)
    if loads:
        raise BuildError(f"{out}: pages load from other hosts (the site must work offline):\n  "
                         + "\n  ".join(loads))
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    return {"lessons": len(lessons), "widgets": widgets, "bytes": size}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks",
                        help="the lesson notebooks (default: notebooks/)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site",
                        help="the site folder, emptied first (default: build/site/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")   # mkdocs' warnings
    # nbconvert gives figures a generic alt text, and says so for every notebook: noise here.
    logging.getLogger("traitlets").addFilter(lambda record: "Alternative text is missing" not in record.getMessage())
    start = time.perf_counter()
    try:
        built = build_site(args.notebooks, args.out)
    except BuildError as error:
        print(f"build_site: {error}", file=sys.stderr)
        return 1
    print(f"{args.out}: {built['lessons']} lessons ({built['widgets']} widget outputs made static), "
          f"{built['bytes'] / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
