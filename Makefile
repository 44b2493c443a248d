# ics-study developer commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: help install test test-all lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install:  ## fresh .venv with ics-study (editable) and its dev tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'

# One pytest-xdist worker per core (at most 8: each holds its own torch), each test file on one worker
# so that a module's fixtures are built once; tests/conftest.py divides the cores' threads among them.
# PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --maxprocesses 8 --dist loadfile

test:  ## the fast suite: units, structure and CLI; no slow, real-data or browser tests (times: README)
	$(PYTEST) -m "not slow and not realdata" tests/unit tests/structure tests/cli

test-all:  ## everything CI runs: slow, real-data and browser tests too
	$(PYTEST)

lint:  ## ruff
	$(BIN)/ruff check ics_study tests scripts

format:  ## ruff format + import sorting
	$(BIN)/ruff check --fix ics_study tests scripts
	$(BIN)/ruff format ics_study tests scripts

bench:  ## the main benchmark: ics-study's loop against a typical loop (scripts/bench.py NAME for the others)
	$(BIN)/python scripts/bench.py loop

clean:  ## remove build artefacts (not results/)
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
