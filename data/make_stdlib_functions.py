"""Make the ``stdlib_functions`` data set: whole Python functions from the standard library, cut for FIM.

    python data/make_stdlib_functions.py   # writes data/stdlib_functions_train.jsonl and _test.jsonl

Every record is one function or method (dedented, at most MAX_CHARS characters, ``ast.parse`` succeeds on
it) cut in three: ``{"prefix", "middle", "suffix", "source", "split"}`` with
``prefix + middle + suffix`` the whole function (gemma_kit/tuning/fim_data.py does the cutting).

- test (TEST records): ``split="line"``: the middle is one line without its indentation (the indentation
  ends the prefix, the newline starts the suffix), chosen as make_stdlib_fim.py chooses its lines: 8 to 50
  characters, code (not a comment or part of a docstring), not a bare ``else:``/``try:``, and every name
  in it also appears elsewhere in the function, so the answer can be read from the context.
- train (TRAIN records): LINE_SHARE of them line splits chosen the same way, the rest ``split="random"``:
  the middle is a random span of 1 to MAX_RANDOM_MIDDLE characters (Bavarian et al., 2022).
- pattern (every held-out function that has one): ``split="line"`` again, but the middle is a line that
  repeats the pattern of the line above or below it (``self.mode = mode`` under ``self.file = file``): the
  same skeleton once names, strings and numbers are blanked, keywords kept. A reader fills such a line by
  looking at its neighbour: the repetitive code that editors' completion serves most. Chosen with a
  separate random stream, so the other splits are the same as without it.

Modules come from make_stdlib_fim.py's selection, and its held-out rule: every fifth module goes to the
test split only, so no held-out function is seen in training. Deterministic (seed 0) for one Python version.
"""

import ast
import json
import keyword
import os
import random
import sys
import sysconfig
import textwrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the clone's gemma_kit
from make_stdlib_fim import HERE, LITERAL, NAME, source_files, string_and_comment_lines, write_splits   # noqa: E402
from gemma_kit.tuning.fim_data import split_line, split_random              # noqa: E402

MAX_CHARS, MIN_LINES = 500, 3           # a function plus its FIM prompt fits in ~200 tokens
PER_MODULE = 40                         # functions per module at most, for variety
TRAIN, TEST = 3000, 200
LINE_SHARE = 0.75                       # of the training records; the rest are random spans
MAX_RANDOM_MIDDLE = 80


def functions(text):
    """Dedented source of every function and method (decorators left out) that is short enough and parses."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return
    lines = text.splitlines(keepends=True)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            source = textwrap.dedent("".join(lines[node.lineno - 1:node.end_lineno]))
            if not source.endswith("\n"):
                source += "\n"
            if len(source) <= MAX_CHARS and source.count("\n") >= MIN_LINES:
                try:
                    ast.parse(source)
                except SyntaxError:
                    continue
                yield source


def answerable_lines(source):
    """Indices of lines fit to be a held-out middle (see the module docstring)."""
    lines = source.splitlines()
    excluded = string_and_comment_lines(source) or set()
    for i, line in enumerate(lines[1:], 1):                          # never the ``def`` line itself
        body = line.strip()
        if i in excluded or not 8 <= len(body) <= 50 or body.startswith(("#", "@", '"', "'")) or "#" in body:
            continue
        if body.endswith(("\\", ",", "(", "[", "{")) or body in ("else:", "try:", "finally:"):
            continue
        context = set(NAME.findall("\n".join(lines[:i] + lines[i + 1:])))
        names = [w for w in NAME.findall(body) if not keyword.iskeyword(w) and w not in dir(__builtins__)]
        if names and all(w in context for w in names):
            yield i


def shape(line):
    """A line's skeleton: names, strings and numbers replaced, keywords kept (``self.N = N``, ``if N is None:``)."""
    return NAME.sub(lambda m: m.group() if keyword.iskeyword(m.group()) else "N", LITERAL.sub("L", line.strip()))


def pattern_lines(source):
    """Answerable lines whose neighbour above or below has the same skeleton (``shape``)."""
    lines = source.splitlines()
    return [i for i in answerable_lines(source)
            if i + 1 < len(lines) and shape(lines[i]) in (shape(lines[i - 1]), shape(lines[i + 1]))]


def main():
    root = sysconfig.get_paths()["stdlib"]
    rng, pattern_rng = random.Random(0), random.Random(1)
    train, test, pattern = [], [], []
    for n, path in enumerate(source_files(root)):
        with open(path, encoding="utf-8", errors="replace") as f:
            found = sorted(set(functions(f.read())))
        rng.shuffle(found)
        module = os.path.relpath(path, root)
        held_out = n % 5 == 0                                          # every fifth module is held out
        for source in found[:PER_MODULE]:
            repeats = pattern_lines(source) if held_out else []
            if repeats:
                pattern.append(dict(split_line(source, pattern_rng.choice(repeats)), source=module, split="line"))
            lines = list(answerable_lines(source))
            if held_out or rng.random() < LINE_SHARE:
                if not lines:
                    continue
                record, kind = split_line(source, rng.choice(lines)), "line"
            else:
                record, kind = split_random(source, rng, MAX_RANDOM_MIDDLE), "random"
            assert record["prefix"] + record["middle"] + record["suffix"] == source
            record.update(source=module, split=kind)
            (test if held_out else train).append(record)
    train, test = write_splits("stdlib_functions", train, test, TRAIN, TEST, rng, f"records found in {root}")
    pattern_rng.shuffle(pattern)
    with open(os.path.join(HERE, "stdlib_functions_pattern.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in pattern)
    lines = sum(r["split"] == "line" for r in train)
    print(f"{TRAIN} training ({lines} line, {TRAIN - lines} random splits) and {TEST} test records from "
          f"Python {sys.version.split()[0]}'s standard library ({root}); {len(pattern)} pattern records")


if __name__ == "__main__":
    main()
