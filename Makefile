# anodescope: every target creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
DEMO_OUT ?= demo_out
export MPLBACKEND := Agg
export NUMBA_CACHE_DIR := $(CURDIR)/.venv/numba-cache

.PHONY: venv demo test test-gpu gpu-wheels gpu-session bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/anodescope demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# GPU tests. Where CuPy already imports, nothing is installed: the project venv when it has CuPy,
# else (no .venv, e.g. the offline GPU device) $(PYTHON) with the repo on PYTHONPATH, or any
# interpreter named by GPU_PYTHON. Otherwise the dev venv gets the CuPy extra GPU_EXTRA (gpu: CUDA 12
# drivers; gpu-cuda13: CUDA 13 drivers).
GPU_PYTHON ?=
GPU_EXTRA ?= gpu
SUBMAKE = $(MAKE) --no-print-directory
test-gpu:
	@if [ -n "$(GPU_PYTHON)" ]; then \
	    py="$(GPU_PYTHON)"; export PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}"; \
	elif [ -x $(BIN)/python ] && $(BIN)/python -c "import cupy" 2>/dev/null; then \
	    $(SUBMAKE) $(STAMP) || exit 1; py=$(BIN)/python; \
	elif [ ! -e $(BIN)/python ] && $(PYTHON) -c "import cupy" 2>/dev/null; then \
	    py=$(PYTHON); export PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}"; \
	else \
	    $(SUBMAKE) $(STAMP) || exit 1; \
	    $(BIN)/python -c "import cupy" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[dev,$(GPU_EXTRA)]" || exit 1; \
	    py=$(BIN)/python; \
	fi; \
	echo "GPU tests with $$py"; \
	$$py -m pytest -q -m gpu $(PYTEST_ARGS)

# Wheels the offline GPU device lacks (benchmarks/gpu/wheels.txt) into .whl/, checked and sized.
gpu-wheels: | $(BIN)/python
	$(BIN)/python benchmarks/gpu/wheels.py download --dest .whl

# The whole GPU session (run it ON the device; see benchmarks/gpu/README.md). GPU_SESSION_DRY=1
# or a machine without a CUDA device: env report and test collection only.
GPU_OUT ?= $(if $(OUT),$(OUT),/tmp/anodescope-gpu-session)
gpu-session:
	bash benchmarks/gpu/session.sh $(GPU_OUT)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
