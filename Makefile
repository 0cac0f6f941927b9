# Everything a newcomer needs: `make demo` (the main job) and `make test` (the test suite).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: venv demo test test-fast lint typecheck check bench validate clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/convlens demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The inner loop: everything not marked slow (Chromium, SIGKILL resume, bench smoke, the longer
# train/resume and demo runs); under 60 s on 2 cores. `make test` runs everything.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/mypy

check: lint test

# The kernel verdicts on planted truths (about 30 minutes on 2 idle cores): docs/validation.md.
validate: $(STAMP)
	$(BIN)/convlens validate --out docs/validation.json --markdown docs/validation.md
	@echo "copy the tables into docs/validation.md (Results)"

bench: $(STAMP)
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
