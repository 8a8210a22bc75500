# One entry point for people and CI. Every target sets up what it needs first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint generate pytest bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The distribution used to be called "mneme", a name that belongs to another project
	# on the package index: drop such an install so only mneme-semantic-cache provides it.
	$(BIN)/python -m pip uninstall --quiet --yes mneme 2>/dev/null || true
	rm -rf src/mneme.egg-info
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts
	$(BIN)/mypy
	$(BIN)/python scripts/unasync.py --check

# The sync cache and the sync Postgres store are generated from their async sources.
generate: $(STAMP)
	$(BIN)/python scripts/unasync.py

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build src/*.egg-info
