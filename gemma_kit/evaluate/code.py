"""Scoring generated code: does it parse, does it pass the tests, and pass@k.

Exact match undercounts code: ``a+b`` and ``a + b`` differ as strings but not as programs. So
code benchmarks (HumanEval, MBPP) *run* the candidate against unit tests. Three pieces:

- ``parses(before, middle, after)``: is the file, with the middle filled in, valid Python?
  The weakest check, and the cheapest (``ast.parse``; nothing is executed).
- ``run_tests(program, tests, timeout)``: run the candidate plus its ``assert`` lines in a
  *separate* Python process (``sys.executable -I``: isolated mode, no user site-packages, no
  environment variables), in an empty temporary folder, killed after ``timeout`` seconds.
  Model-written code is untrusted: it may loop forever, delete files or call ``exit``, so it
  never runs in this process. (A subprocess is not a sandbox: HumanEval's harness also turns off
  destructive functions; run untrusted benchmarks in a container.) The result is one of
  ``passed``, ``failed`` (an ``assert`` was false), ``error`` (any other exception, a syntax
  error included) or ``timeout``.
- ``pass_at_k(n, c, k)``: with ``n`` samples per task of which ``c`` passed, the probability
  that at least one of ``k`` samples drawn without replacement passes: ``1 - C(n-c, k) / C(n, k)``.
  This is the *unbiased* estimator of Chen et al. (2021), "Evaluating Large Language Models
  Trained on Code" (the Codex/HumanEval paper), computed as their product form so that large
  binomial coefficients never overflow. ``1 - (1 - c/n) ** k`` looks similar but is biased low
  when ``n`` is small (it assumes sampling *with* replacement from an estimated rate).
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import secrets
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np

# Runs inside the child process: execute the candidate file, map the outcome to an exit code.
_HARNESS = """
import sys, traceback
source = open("candidate.py", encoding="utf-8").read()
try:
    exec(compile(source, "candidate.py", "exec"), {"__name__": "__candidate__"})
except AssertionError:
    traceback.print_exc()
    sys.exit(3)
except BaseException:
    traceback.print_exc()
    sys.exit(4)
print(sys.argv[1])    # reached only after every assert ran: a candidate calling os._exit(0) does not pass
"""
_STATUS_OF_CODE = {0: "passed", 3: "failed"}      # anything else: "error"


@dataclass
class TestResult:
    """The outcome of one ``run_tests`` call."""
    status: str          # "passed" | "failed" | "error" | "timeout"
    detail: str          # the last lines of the child's stderr (the traceback), or why it stopped
    seconds: float       # wall-clock time of the child

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def parses(before: str, middle: str, after: str) -> bool:
    """True when ``before + middle + after`` is syntactically valid Python (nothing is run)."""
    for name, part in (("before", before), ("middle", middle), ("after", after)):
        if not isinstance(part, str):
            raise TypeError(f"parses: {name} must be a string, got {type(part).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # SyntaxWarning on odd escapes is still valid code
        try:
            ast.parse(before + middle + after)
        except (SyntaxError, ValueError, RecursionError, MemoryError):   # ValueError: a NUL byte
            return False
    return True


def run_tests(program: str, tests: str, timeout: float = 5.0) -> TestResult:
    """Run ``program`` followed by ``tests`` (``assert`` lines) in a fresh, isolated Python process."""
    if not isinstance(program, str) or not isinstance(tests, str):
        raise TypeError("run_tests: program and tests must be strings")
    if not timeout > 0:
        raise ValueError(f"run_tests: timeout must be positive seconds, got {timeout!r}")
    with tempfile.TemporaryDirectory(prefix="gemma_kit_eval_") as folder:
        with open(os.path.join(folder, "candidate.py"), "w", encoding="utf-8") as f:
            f.write(program.rstrip("\n") + "\n\n" + tests.rstrip("\n") + "\n")
        start = time.perf_counter()
        # A new session: on timeout the whole process group dies, children the candidate started too.
        done = secrets.token_hex(8)                     # printed by the harness after the tests, not by the candidate
        child = subprocess.Popen([sys.executable, "-I", "-c", _HARNESS, done], cwd=folder, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=(os.name == "posix"))
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(child)
            child.communicate()
            return TestResult("timeout", f"killed after {timeout:g} s", time.perf_counter() - start)
        seconds = time.perf_counter() - start
    detail = "\n".join(stderr.strip().splitlines()[-3:])
    status = _STATUS_OF_CODE.get(child.returncode, "error")
    if status == "passed" and done not in stdout.splitlines():
        status, detail = "error", "the process exited 0 before the tests finished"
    return TestResult(status, detail, seconds)


def _kill(child: subprocess.Popen) -> None:
    if os.name == "posix":
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:                      # it ended between the timeout and the kill
            pass
    else:
        child.kill()


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k: ``1 - C(n-c, k) / C(n, k)`` for ``c`` passing samples out of ``n``."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"pass_at_k: {name} must be an integer, got {value!r}")
    if not (n >= 1 and 0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs n >= 1, 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:                                       # every draw of k samples contains a passing one
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)   (Chen et al. 2021, Figure 3)
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
