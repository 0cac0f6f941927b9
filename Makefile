# Everything a newcomer needs: `make demo` (the main job) and `make test` (the test suite).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: venv demo test test-fast lint typecheck check bench validate wheel-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The main job: the natural-image demo (5 seeds, about 4 min; the origin verdict exchanges whole
# networks and needs 5), then the faces demo (5 seeds, about 30 s), whose report shows the natural
# run's first layer beside its own. NATURAL_SEEDS=2 takes 2 min; its origin verdict cannot be decided.
NATURAL_SEEDS ?= 5
demo: $(STAMP)
	$(BIN)/convlens demo --data natural --seeds $(NATURAL_SEEDS) --out runs/demo-natural
	$(BIN)/convlens demo --beside runs/demo-natural

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
	$(BIN)/convlens validate --out docs/validation.json --markdown docs/validation.md --readme README.md

# The wheel as a user gets it: built, installed into a clean venv, the demo run outside the tree.
WHEEL_VENV ?= /tmp/convlens-wheel-check
wheel-check: $(STAMP)
	rm -rf dist $(WHEEL_VENV)
	$(BIN)/pip wheel $(PIP_FLAGS) --no-deps -w dist .
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install $(PIP_FLAGS) -c constraints.txt dist/convlens-*.whl
	cd $(WHEEL_VENV) && bin/convlens demo --seeds 1 --epochs 5 --null-size 200 --out demo -q
	test -s $(WHEEL_VENV)/demo/report.html

bench: $(STAMP)
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
