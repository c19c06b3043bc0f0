"""Make the fill-in-the-middle data set: one missing line of real Python, cut from the standard library.

    python data/make_stdlib_fim.py            # writes data/stdlib_fim_train.jsonl and stdlib_fim_test.jsonl

Each example shows a few lines of a standard-library module with one line replaced
by ``<FILL>`` (its indentation kept) and asks for that line; the answer is the
line without its indentation. A line is chosen only when every name in it also
appears in the lines around it, so the answer can be read from the context (for
example ``self.name = name`` below ``def __init__(self, name):``), and only when a line next to
it follows the same pattern (``self.size = size`` under ``self.name = name``). The test split
comes from other modules than the training split, so no held-out answer is seen
in training. Everything is deterministic: the same Python version gives the same files.
"""

import io
import json
import keyword
import os
import random
import re
import sys
import sysconfig
import textwrap
import tokenize

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "site-packages", "dist-packages",
        "__pycache__", "pydoc_data", "encodings", "config-3.11-x86_64-linux-gnu"}
INSTRUCTION = "Fill in the Python line marked <FILL>. Reply with that line only."
BEFORE, AFTER = 5, 2                    # context lines around the missing one
MAX_CONTEXT_CHARS = 320
PER_FILE = 6
TRAIN, TEST = 800, 200
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"|\b\d+\b")


def shape(line):
    """A line's skeleton: names, strings and numbers replaced, so ``self.a = a`` and ``self.b = b`` match."""
    return NAME.sub("N", LITERAL.sub("L", line.strip()))


def source_files(root):
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP and not d.startswith("test"))
        files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py") and not n.startswith("test")]
    return sorted(files, key=lambda p: os.path.relpath(p, root))


def string_and_comment_lines(text):
    """Line numbers (0-based) that lie inside a multi-line string (docstrings) or hold only a comment."""
    lines = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.STRING and token.end[0] > token.start[0]:
                lines.update(range(token.start[0] - 1, token.end[0]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return lines


def candidates(lines, excluded):
    for i in range(BEFORE, len(lines) - AFTER):
        line = lines[i]
        body = line.strip()
        if i in excluded or not 8 <= len(body) <= 50 or body.startswith(("#", "@", '"', "'")):
            continue
        if "#" in body or body.endswith(("\\", ",", "(", "[", "{")) or body in ("else:", "try:", "finally:"):
            continue
        context = lines[i - BEFORE:i] + lines[i + 1:i + 1 + AFTER]
        if any(not c.strip() for c in context[-AFTER:]) and not lines[i + 1].strip():
            continue                                        # the line closes a block: too open-ended
        if shape(line) not in (shape(lines[i - 1]), shape(lines[i + 1])):
            continue                                        # no neighbour with the same pattern
        words = set(NAME.findall(" ".join(context)))
        names = [w for w in NAME.findall(body) if not keyword.iskeyword(w) and w not in dir(__builtins__)]
        if not names or any(w not in words for w in names):
            continue                                        # a name the context does not show
        snippet = lines[i - BEFORE:i] + [line[:len(line) - len(line.lstrip())] + "<FILL>"] + lines[i + 1:i + 1 + AFTER]
        code = textwrap.dedent("\n".join(snippet))          # the snippet's common indentation removed
        if len(code) <= MAX_CONTEXT_CHARS:
            yield {"prompt": f"{INSTRUCTION}\n\n{code}", "response": body}


def write_splits(name, train, test, n_train, n_test, rng, where):
    """Shuffle both splits, check there are enough, write ``<name>_train.jsonl`` and ``<name>_test.jsonl`` here."""
    rng.shuffle(train)
    rng.shuffle(test)
    if len(train) < n_train or len(test) < n_test:
        sys.exit(f"only {len(train)} training and {len(test)} test {where}")
    for split, rows in (("train", train[:n_train]), ("test", test[:n_test])):
        with open(os.path.join(HERE, f"{name}_{split}.jsonl"), "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return train[:n_train], test[:n_test]


def main():
    root = sysconfig.get_paths()["stdlib"]
    rng = random.Random(0)
    train, test = [], []
    for n, path in enumerate(source_files(root)):
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        excluded = string_and_comment_lines(text)
        if excluded is None:
            continue
        found = list(candidates(text.splitlines(), excluded))
        rng.shuffle(found)
        module = os.path.relpath(path, root)
        for example in found[:PER_FILE]:
            example["source"] = module
            (test if n % 5 == 0 else train).append(example)   # every fifth module is held out
    write_splits("stdlib_fim", train, test, TRAIN, TEST, rng, f"examples found in {root}")
    print(f"{TRAIN} training and {TEST} test examples from Python {sys.version.split()[0]}'s standard library "
          f"({root})")


if __name__ == "__main__":
    main()
