# `make run` and `make test` are the whole quick start; both build .venv when missing or stale.
PYTHON ?= python3
VENV := .venv
# The runtime dependencies (all `make run` needs), and on top of them the test extras.
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
PY := $(VENV)/bin/python
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k storage -x"`.
PYTEST_ARGS ?=
# Test worker processes (pytest-xdist); each test file runs whole on one worker. 0 runs serially.
TEST_WORKERS ?= 2

.PHONY: run test bench clean setup system-deps

setup: $(TEST_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

# Debian packages the host and browser tests need; only attempted as root, skipped otherwise.
system-deps:
	@bash scripts/system-deps.sh

run: $(STAMP)
	$(VENV)/bin/harness run --nemesis partition --nodes 5 --time-limit 30

test: $(TEST_STAMP) system-deps
	$(PY) -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/storage.py
	$(PY) bench/checker.py
	$(PY) bench/cluster.py

clean:
	rm -rf $(VENV) store .pytest_cache .hypothesis
