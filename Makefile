# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test proto lint

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,train]'

demo: install
	$(BIN)/eew demo

test: install-test
	$(BIN)/ruff check services models tests bench
	$(BIN)/python -m pytest -q -rs tests

proto: install-test
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=services/common/pb --pyi_out=services/common/pb proto/eew/v1/messages.proto
