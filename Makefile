# The README's commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# checkov, for tests/test_kubernetes.py, in an environment of its own: it pins packaging<24,
# which pytest 9 cannot share. pyproject.toml's `checkov` dependency group says what goes in.
CHECKOV_VENV ?= .venv-checkov
export MNIST_SWEEP_CHECKOV ?= $(abspath $(CHECKOV_VENV))/bin/checkov
# Offline copies of the data sets (tests, CI, benchmarks); users elsewhere get Keras's downloader.
SHARED_DATA := $(abspath ../shared/datasets)
ifneq ($(wildcard $(SHARED_DATA)/mnist),)
export MNIST_SWEEP_DATA_DIR ?= $(SHARED_DATA)
endif

.PHONY: install dev system-deps browser-deps checkov run test test-all test-browser lint format bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(BIN)/.dev-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(CHECKOV_VENV)/.installed: pyproject.toml
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q --group checkov
	touch $@

# Debian packages the tests use: docker-compose v1 (a second compose validator; no engine needed).
system-deps:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose; \
	  else echo "warning: docker-compose is missing (apt-get install docker-compose); tests/test_compose.py will fail"; fi; }

# Debian's Chromium for the real-browser tests (Playwright drives /usr/bin/chromium; its own
# browser download is not used).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "warning: chromium is missing (apt-get install chromium); the browser tests will fail"; fi; }

install: $(BIN)/.installed

dev: $(BIN)/.dev-installed

checkov: $(CHECKOV_VENV)/.installed

run: install
	$(BIN)/mnist-sweep run search_spaces/activation.yaml

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: dev
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: lint system-deps checkov
	$(BIN)/pytest

test-all: lint system-deps browser-deps checkov
	$(BIN)/pytest -m "" --timeout 3600

test-browser: dev browser-deps
	$(BIN)/pytest -m browser

bench: install
	$(BIN)/python bench/train_overhead.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) mlruns mlflow.db optuna.db *.egg-info .pytest_cache .mypy_cache .ruff_cache
