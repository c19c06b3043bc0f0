"""What a learner waits for before the first cell does anything: import time, memory, load time.

    python benchmarks/startup.py                          # this checkout, 3 rounds
    python benchmarks/startup.py --compare /path/to/old   # and another checkout, the two taking turns

Each measurement is a fresh Python process (``KERAS_BACKEND=jax``), so nothing is
cached in memory between them (the OS file cache and JAX's on-disk compile cache
are warm after the first round: rounds are medians). In the child:

| column           | meaning                                                                        |
|------------------|--------------------------------------------------------------------------------|
| import s         | wall time of ``import gemma_kit``                                              |
| import MB        | peak resident memory (VmHWM) right after the import                            |
| load s           | wall time of ``gemma_kit.load("gemma3_270m")`` (read the GGUF, build the model) |
| peak MB          | peak resident memory after the load                                            |
| tensorflow / keras_hub | whether the import or the load pulled them into ``sys.modules``          |
| log lines        | lines the child wrote on stderr, the loader's progress bar aside               |

``--compare`` runs another checkout of the kit (its folder is put first on
``PYTHONPATH``) with the same interpreter, in alternating rounds, and prints
the ratios this / other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
import gemma_kit
t1 = time.perf_counter()
after_import = {"import_s": t1 - t0, "import_mb": peak_mb(),
                "tf_at_import": "tensorflow" in sys.modules, "kh_at_import": "keras_hub" in sys.modules}
gemma_kit.load("gemma3_270m")
t2 = time.perf_counter()
print(json.dumps({**after_import, "load_s": t2 - t1, "peak_mb": peak_mb(), "file": gemma_kit.__file__,
                  "tensorflow": "tensorflow" in sys.modules, "keras_hub": "keras_hub" in sys.modules}))
"""


def measure(checkout: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": checkout}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd="/", capture_output=True, text=True,
                          timeout=600)
    if done.returncode:
        raise RuntimeError(f"{checkout}: the child failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Log lines on stderr (TensorFlow's start-up chatter, warnings), not counting the loader's progress bar.
    lines = [line.rsplit("\r", 1)[-1] for line in done.stderr.split("\n")]
    result["log_lines"] = sum(1 for line in lines if line.strip() and "Loading " not in line)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", default=None, help="another checkout of gemma-kit to measure in turn")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = {"this": here} if args.compare is None else {"this": here, "other": os.path.abspath(args.compare)}
    runs = {name: [] for name in checkouts}
    for round_ in range(args.rounds):
        for name, path in checkouts.items():          # the systems take turns
            runs[name].append(measure(path))
            print(f"round {round_ + 1} {name}: " + ", ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in runs[name][-1].items()
                if k != "file"), flush=True)
    keys = ("import_s", "import_mb", "load_s", "peak_mb")
    print("\n| checkout | import s | import MB | load s | peak MB | tensorflow | keras_hub | log lines |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    medians = {}
    for name, results in runs.items():
        medians[name] = {k: statistics.median(r[k] for r in results) for k in keys}
        last = results[-1]
        print(f"| {name} ({checkouts[name]}) | " + " | ".join(f"{medians[name][k]:.2f}" if k.endswith("_s")
              else f"{medians[name][k]:.0f}" for k in keys)
              + f" | {last['tensorflow']} | {last['keras_hub']} | {last['log_lines']} |")
    if "other" in medians:
        print("| this / other | " + " | ".join(f"{medians['this'][k] / medians['other'][k]:.2f}x" for k in keys)
              + " | | | |")


if __name__ == "__main__":
    main()
