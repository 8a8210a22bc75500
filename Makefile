# One entry point for people and CI. Every target sets up what it needs first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-sqlite test lint generate pytest bench bench-quick quality quality-speed clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The distribution used to be called "mneme", a name that belongs to another project
	# on the package index: drop such an install so only mneme-semantic-cache provides it.
	$(BIN)/python -m pip uninstall --quiet --yes mneme 2>/dev/null || true
	rm -rf src/mneme.egg-info
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: Layer 2 in PostgreSQL + pgvector (embedded server), two processes.
demo: $(STAMP)
	$(BIN)/python examples/demo.py

# The embedded default: one SQLite file, one process.
demo-sqlite: $(STAMP)
	$(BIN)/python examples/demo_sqlite.py

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

# Wrong-hit rates on the fow-cache test half (docs/quality.md, benchmarks/results/).
quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py $(QUALITY_ARGS)

# MiniLM vectors/s and latency, and the near-miss checks' cost per pair.
quality-speed: $(STAMP)
	$(BIN)/python benchmarks/minilm_speed.py
	$(BIN)/python benchmarks/guards_speed.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build src/*.egg-info
