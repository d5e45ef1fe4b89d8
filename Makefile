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

# mypyc (in the mypy distribution) compiles the node's hottest modules (scripts/build_native.py);
# optional: without it, or when a build fails, the node runs pure Python.
MYPYC_REQ ?= mypy==2.4.1

.PHONY: run test bench clean setup system-deps native

setup: $(TEST_STAMP) native

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

# Compiles node/_native/ when it is missing or any compiled module's source changed (seconds when
# current); never fails: a failed build prints one warning line and the node runs pure Python.
native: $(STAMP)
	@$(PY) -c 'import mypyc' 2>/dev/null || $(PY) -m pip install --quiet '$(MYPYC_REQ)' || true
	@$(PY) scripts/build_native.py --quiet

run: $(STAMP) native
	$(VENV)/bin/harness run --nemesis partition --nodes 5 --time-limit 30

test: $(TEST_STAMP) system-deps native
	$(PY) -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP) native
	$(PY) bench/storage.py
	$(PY) bench/checker.py
	$(PY) bench/cluster.py

clean:
	rm -rf $(VENV) store .pytest_cache .hypothesis node/_native .mypy_cache
