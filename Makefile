# tierproof — the two commands on a fresh machine are `make demo` and `make test`.
# Each does its own set-up: a virtualenv in .venv with the package installed editable,
# and (for tests) the Debian packages of the real servers the tests start.

PY     ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: demo test lint typecheck unit bench system venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	touch $(STAMP)

venv: $(STAMP)

## system: Debian packages the tests need (real servers, browser); idempotent
system:
	bash scripts/system-deps.sh

## demo: simulated plant -> collectors -> embedded store -> KPIs -> API + dashboard on :8000
demo: venv
	$(BIN)/tierproof demo $(ARGS)

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest $(ARGS)

## test: everything CI runs: set-up, lint, types, the whole test suite
test: venv system lint typecheck
	$(BIN)/pytest $(ARGS)

## bench: benchmarks, printing figures and ratios against the raw client loops
bench: venv
	$(BIN)/python bench/bench_modbus.py
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_opcua.py --servers 2

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
