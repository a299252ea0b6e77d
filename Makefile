# `make install` builds .venv with every extra; `make test` lints, type-checks and runs pytest.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := runtime,audio,blake3,dev

.PHONY: install test test-fast lint typecheck pytest demo bench clean

install: $(VENV)/.install-stamp

$(VENV)/.install-stamp: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

lint: install
	$(BIN)/ruff check sonic_registry reference_runtime tests bench __init__.py conftest.py
	$(BIN)/ruff format --check sonic_registry reference_runtime tests bench __init__.py conftest.py

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

# The quick loop while editing: everything but the end-to-end files marked
# slow in tests/conftest.py (CI and `make test` still run them all).
test-fast: install
	$(BIN)/pytest -m "not slow"

demo: install
	$(BIN)/python -m reference_runtime demo

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info demo-output
