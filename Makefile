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

# The tested versions: requirements.txt (the app) and requirements-dev.txt (plus the tools and
# test libraries), compiled from pyproject.toml's ranges by `make lock`.
PIP_COMPILE = $(BIN)/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links --upgrade

.PHONY: install dev lock checkov system-deps browser-deps run test test-slow test-all test-browser lint format bench clean

# uv installs the locked versions about 3x faster than pip (BENCHMARKS.md); pip only bootstraps it.
UV_VERSION := 0.13.8
UV_INSTALL = $(BIN)/uv pip install -q --python $(BIN)/python

$(BIN)/uv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)

$(BIN)/.installed: pyproject.toml requirements.txt | $(BIN)/uv
	$(UV_INSTALL) -r requirements.txt
	$(UV_INSTALL) --no-deps -e .
	touch $@

# One pass: requirements-dev.txt pins the app's dependencies exactly as requirements.txt does.
$(BIN)/.dev-installed: pyproject.toml requirements.txt requirements-dev.txt | $(BIN)/uv
	$(UV_INSTALL) -r requirements-dev.txt
	$(UV_INSTALL) --no-deps -e .
	touch $@ $(BIN)/.installed

# Refresh the lock files to the newest versions pyproject.toml allows (then run make test).
lock: | $(BIN)/uv
	$(BIN)/python -m pip install -q pip-tools
	$(PIP_COMPILE) -o requirements.txt pyproject.toml
	$(PIP_COMPILE) --extra dev -c requirements.txt -o requirements-dev.txt pyproject.toml
	$(BIN)/uv pip compile -q --upgrade --group pyproject.toml:checkov --python-version 3.11 \
	  --custom-compile-command "make lock" -o requirements-checkov.txt

$(CHECKOV_VENV)/.installed: pyproject.toml requirements-checkov.txt | $(BIN)/uv
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(BIN)/uv pip install -q --python $(CHECKOV_VENV)/bin/python -r requirements-checkov.txt
	touch $@

# Installs Debian packages when root: finishes a dpkg run that an earlier, interrupted install left
# half-done (apt-get refuses to start otherwise), then tries the install a second time if the first fails.
APT_INSTALL = { dpkg --configure -a >/dev/null 2>&1 || true; \
  for try in 1 2; do apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) && break; \
  [ $$try = 2 ] && exit 1; dpkg --configure -a || true; sleep 5; done; }

# Debian packages the tests use: docker-compose v1 (a second compose validator; no engine needed)
# and the PostgreSQL server binaries (the postgres tests start a throwaway cluster with initdb and
# pg_ctl; not needed when $$MNIST_SWEEP_TEST_POSTGRES names a server).
system-deps:
	@[ -n "$$MNIST_SWEEP_TEST_POSTGRES" ] || command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    $(call APT_INSTALL,--no-install-recommends postgresql); \
	  else echo "warning: the PostgreSQL server is missing (sudo apt-get install postgresql); the postgres tests will fail"; fi; }
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    $(call APT_INSTALL,--no-install-recommends docker-compose); \
	  else echo "warning: docker-compose is missing (apt-get install docker-compose); tests/test_compose.py will fail"; fi; }

# Debian's Chromium for the real-browser tests (Playwright drives /usr/bin/chromium; its own
# browser download is not used).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    $(call APT_INSTALL,chromium); \
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

# The slow engine tests: real processes killed and resumed, several workers, asha end to end (CI runs these
# too); the full-data accuracy reproductions are left to test-all.
test-slow: dev system-deps
	$(BIN)/pytest -m "slow and not full_data and not gpu and not browser"

test-all: lint system-deps browser-deps checkov
	$(BIN)/pytest -m "" --timeout 3600

test-browser: dev browser-deps
	$(BIN)/pytest -m browser

bench: install
	$(BIN)/python bench/train_speed.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) mlruns mlflow.db optuna.db *.egg-info .pytest_cache .mypy_cache .ruff_cache
