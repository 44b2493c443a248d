# ics-study developer commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: help install test test-fast lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install:  ## fresh .venv with ics-study (editable) and its dev tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'

test:  ## the whole suite, slow and real-data tests included
	$(BIN)/python -m pytest

test-fast:  ## the suite without slow tests
	$(BIN)/python -m pytest -m "not slow"

lint:  ## ruff
	$(BIN)/ruff check ics_study tests scripts

format:  ## ruff format + import sorting
	$(BIN)/ruff check --fix ics_study tests scripts
	$(BIN)/ruff format ics_study tests scripts

bench:  ## the main benchmark: ics-study's loop against a typical loop (scripts/bench.py NAME for the others)
	$(BIN)/python scripts/bench.py loop

clean:  ## remove build artefacts (not results/)
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
