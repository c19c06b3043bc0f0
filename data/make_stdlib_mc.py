"""Make the multiple-choice data set: "which function does this?", asked from standard-library docstrings.

    python data/make_stdlib_mc.py            # writes data/stdlib_mc_test.jsonl

Each question quotes the first sentence of a public function's docstring and offers four
functions of the same module; the model scores each option as a continuation (lesson 10,
``gemma_kit.evaluate.multiple_choice``):

    Python module: json
    Description: Serialize ``obj`` to a JSON formatted ``str``.
    Function: json.       options "dump", "dumps", "detect_encoding"... (each continues "json.")

The options are bare names (the question ends with "module.", so the split between question
and option is a token boundary) and are chosen to differ in length, so that scoring by the sum
of log-probabilities and scoring per character can pick different answers. A question is kept
only when its sentence does not contain the function's name, and no distractor has the same
docstring sentence (aliases), so exactly one option is right. Deterministic (seed 0) for one
Python version: docstrings change between versions.
"""

import importlib
import inspect
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = ("json", "os", "os.path", "shutil", "string", "textwrap", "math", "itertools", "functools", "random",
           "statistics", "re", "base64", "html", "urllib.parse", "fnmatch", "glob", "heapq", "bisect", "calendar",
           "difflib", "zlib", "binascii", "copy", "shlex", "colorsys", "operator", "tempfile", "time", "inspect",
           "keyword", "unicodedata", "struct", "pathlib", "gzip", "zipfile", "tarfile", "hashlib", "secrets",
           "uuid", "platform", "locale", "codecs", "csv", "pprint", "socket", "subprocess", "sys", "types",
           "typing", "warnings", "weakref", "ast", "dis", "tokenize", "email.utils", "mimetypes", "quopri")
OPTIONS, MAX_PER_MODULE, MAX_QUESTIONS = 4, 6, 240
SIGNATURE = re.compile(r"^[\w.]+\(.*\)")      # a C function's docstring may start with its signature


def first_sentence(obj):
    """The docstring's first sentence (at most 160 characters), or None."""
    doc = inspect.getdoc(obj)
    if not doc:
        return None
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
    if paragraphs and SIGNATURE.match(paragraphs[0]):
        paragraphs = paragraphs[1:]
    if not paragraphs:
        return None
    sentence = re.split(r"(?<=[.!?])\s", paragraphs[0])[0]
    return sentence if 20 <= len(sentence) <= 160 else None


def functions_of(module):
    """{name: first sentence} of the module's public functions (defined or documented there)."""
    found = {}
    for name in sorted(dir(module)):
        obj = getattr(module, name)
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        sentence = first_sentence(obj)
        if sentence and name.lower() not in sentence.lower().replace("_", ""):
            found[name] = sentence
    return found


def questions_of(module_name, rng):
    functions = functions_of(importlib.import_module(module_name))
    names = sorted(functions)
    made = []
    for answer in rng.sample(names, len(names)):
        if len(made) == MAX_PER_MODULE:
            break
        others = [n for n in names if n != answer and functions[n] != functions[answer]
                  and len(n) != len(answer)]
        if len(others) < OPTIONS - 1:
            continue
        # Prefer distractors whose lengths differ from the answer's and from each other.
        rng.shuffle(others)
        distractors, lengths = [], {len(answer)}
        for n in others:
            if len(n) not in lengths:
                distractors.append(n)
                lengths.add(len(n))
            if len(distractors) == OPTIONS - 1:
                break
        if len(distractors) < OPTIONS - 1:
            continue
        options = [answer] + distractors
        rng.shuffle(options)
        made.append({"module": module_name, "function": answer,
                     "question": f"Python module: {module_name}\nDescription: {functions[answer]}\n"
                                 f"Function: {module_name}.",
                     "options": [f"{n}" for n in options], "answer": options.index(answer)})
    return made


def main():
    rng = random.Random(0)
    questions = []
    for module_name in MODULES:
        questions += questions_of(module_name, rng)
    questions = questions[:MAX_QUESTIONS]
    for i, q in enumerate(questions):
        q["id"] = f"stdlib_mc_{i:03d}"
        q["python"] = sys.version.split()[0]
    path = os.path.join(HERE, "stdlib_mc_test.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    print(f"{len(questions)} questions from {len({q['module'] for q in questions})} modules -> {path}")


if __name__ == "__main__":
    main()
