# `make run` and `make test` are the whole quick start; both build .venv when missing or stale.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k storage -x"`.
PYTEST_ARGS ?=

.PHONY: run test bench clean setup system-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian packages the host and browser tests need; only attempted as root, skipped otherwise.
system-deps:
	@bash scripts/system-deps.sh

run: $(STAMP)
	$(VENV)/bin/harness run --nemesis partition --nodes 5 --time-limit 30

test: $(STAMP) system-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/storage.py
	$(PY) bench/checker.py
	$(PY) bench/cluster.py

clean:
	rm -rf $(VENV) store .pytest_cache .hypothesis
