# Two commands for a fresh machine (see README.md):
#   make demo   creates .venv, installs the kit with the embedded Gemma 3 270M, generates text on the CPU
#   make test   creates .venv, installs the test set-up, runs the whole suite on JAX, TensorFlow and PyTorch
# and, for the people who make the course:
#   make wheel    dist/gemma_kit-*.whl: the package and the lessons' data sets (upload it to Colab or Kaggle)
#   make lessons  runs every notebook at its default parameters and stores its outputs (scripts/lessons.py)
#   make site     the course as a static site in build/site, from the stored outputs (scripts/build_site.py)
# Both installs pin the versions the suite last passed with: constraints.txt (scripts/pin_versions.py writes it).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
# Two workers (pytest-xdist), one per core, each computing on one thread and given whole test files (module
# fixtures load once), the longest first; the lessons are split in two halves (tests/conftest.py).
PYTEST := $(PY) -m pytest -q -p no:cacheprovider --durations=15 -n 2 --dist loadfile --no-loadscope-reorder

.PHONY: demo test test-jax test-tensorflow test-torch wheel lessons site bench-llama clean

$(VENV)/.demo-installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -c constraints.txt -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -c constraints.txt -e ".[test]"
	touch $(VENV)/.demo-installed $@

demo: $(VENV)/.demo-installed
	$(VENV)/bin/gemma-kit generate "The capital of France is" --max-new-tokens 32

# Tests marked `once` (notebooks, 8-device subprocesses, servers, the browser) run in the JAX pass only;
# everything else runs on all three backends.
test: $(VENV)/.test-installed
	$(MAKE) test-jax test-tensorflow test-torch

test-jax: $(VENV)/.test-installed
	KERAS_BACKEND=jax $(PYTEST) tests

test-tensorflow: $(VENV)/.test-installed
	KERAS_BACKEND=tensorflow $(PYTEST) -m "not once" tests

test-torch: $(VENV)/.test-installed
	KERAS_BACKEND=torch $(PYTEST) -m "not once" tests

wheel: $(VENV)/.demo-installed
	rm -rf dist build/lib build/bdist.*    # setuptools leftovers; build/site (make site) stays
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w dist .
	@ls -l dist/gemma_kit-*.whl

lessons: $(VENV)/.test-installed
	$(PY) scripts/lessons.py run

# The course as a static site, from the lessons' stored outputs (nothing runs; `make lessons` first).
# Open build/site/index.html, or serve it for search: python -m http.server -d build/site
site: $(VENV)/.test-installed
	$(PY) scripts/build_site.py --out build/site

# llama.cpp for benchmarks/decode.py, in its own venv: llama-cpp-python from PyPI builds llama.cpp from
# source (a C++ compiler and cmake; about 40 minutes on 2 cores). decode.py finds it there.
LLAMA_VENV := benchmarks/.venv-llama
bench-llama: $(LLAMA_VENV)/.installed
$(LLAMA_VENV)/.installed:
	$(PYTHON) -m venv $(LLAMA_VENV)
	$(LLAMA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check llama-cpp-python==0.3.36
	touch $@

clean:
	rm -rf $(VENV) .cache build dist
