# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test proto lint web

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,train]'

# The dashboard's front end: npm packages (package-lock.json) bundled into services/dashboard/web/dist.
WEB := services/dashboard/web
web: $(WEB)/dist/index.html

$(WEB)/dist/index.html: $(WEB)/package.json $(WEB)/package-lock.json $(WEB)/build.mjs $(wildcard $(WEB)/src/*)
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

demo: install web
	$(BIN)/eew demo

test: install-test web
	$(BIN)/ruff check services models tests bench
	$(BIN)/python -m pytest -q -rs tests

proto: install-test
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=services/common/pb --pyi_out=services/common/pb proto/eew/v1/messages.proto
