# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
# pytest-xdist workers of `make test`: the suite mostly waits on brokers and service processes, so 3
# workers take a 2-core machine from ~18 to ~11 minutes (every test is written for a busy machine).
TEST_WORKERS ?= 3
BIN := $(VENV)/bin

.PHONY: demo test test-fast install install-test proto lint web

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Every service (pyproject.toml: the core is the detector's runtime, `services` adds the others).
install: $(BIN)/python
	$(BIN)/pip install -q -e '.[services]'

# `test` includes `services`; `train` brings torch for the model's tests.
install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,train]'
	@touch $(VENV)/.test-installed

$(VENV)/.test-installed: pyproject.toml
	$(MAKE) install-test

# The dashboard's front end: npm packages (package-lock.json) bundled into services/dashboard/web/dist.
WEB := services/dashboard/web
web: $(WEB)/dist/index.html

$(WEB)/dist/index.html: $(WEB)/package.json $(WEB)/package-lock.json $(WEB)/build.mjs $(wildcard $(WEB)/src/*)
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

demo: install web
	$(BIN)/eew demo

test: install-test web
	$(BIN)/ruff check services models tests bench
	$(BIN)/python -m pytest -q -rs -n $(TEST_WORKERS) tests

# The development loop: ruff and the unit tests not marked `slow` (installs only when pyproject.toml
# changed since the last install; CI runs `make test`).
test-fast: $(VENV)/.test-installed
	$(BIN)/ruff check services models tests bench
	$(BIN)/python -m pytest -q -m "not slow" tests/unit

proto: install-test
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=services/common/pb --pyi_out=services/common/pb proto/eew/v1/messages.proto
