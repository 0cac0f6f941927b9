# Everything a newcomer needs: `make demo` (the main job) and `make test` (the test suite).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: venv demo test lint typecheck check bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Until `convlens demo` (train + analyse + report) lands: the seed's worked example, checked, and
# classical kernels applied to a bundled image.
demo: $(STAMP)
	$(BIN)/convlens explain --kernel "1 2 3; 4 5 6; 7 8 9" --input "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8"
	-$(BIN)/convlens explain --kernel "1 2 3; 4 5 6; 7 8 9" --input "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8" \
	    --expect "146 157; 200 233" --max-cells 0
	$(BIN)/convlens filter sample:camera --out runs/demo/filters

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/mypy

check: lint test

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
