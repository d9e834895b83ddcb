# poisson-nmf: `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all demo test test-slow test-fast lint format benchmarks clean help

help:
	@echo "make demo       set up .venv and run the main job on the bundled digits"
	@echo "make test       set up .venv, run lint, then the test suite (slow tests skipped)"
	@echo "make test-slow  the slow statistical checks (simulation-based calibration, ...)"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make benchmarks run the side-by-side benchmarks in benchmarks/"

$(STAMP): pyproject.toml
	@py=$$(PYTHON="$(PYTHON)" tools/find_python.sh) || exit 1; \
	echo "using $$py ($$($$py --version))"; \
	if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		rm -rf $(VENV) && $$py -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/poisson-nmf demo --out reports/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q --runslow -m slow

benchmarks: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
