# tierproof — the two commands on a fresh machine are `make demo` and `make test`.
# Each does its own set-up: a virtualenv in .venv with the package installed editable,
# and (for tests) the Debian packages of the real servers the tests start.

PY     ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run-venv demo test lint typecheck unit bench bench-system system interop-deps venv clean proto

# the runtime install (make demo) and the development install (make test / bench) are separate
# stamps: a newcomer's demo does not wait for linters, type checkers and test tools
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

$(BIN)/python:
	@echo "setting up $(VENV) (first run only): a virtualenv, then pip upgraded"
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# pip's own lines (one or two per package: Collecting, Downloading, then Installing ...) are
# the progress of the ~half a minute a first `make demo` spends here; -q left it silent
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@echo "installing tierproof and its runtime dependencies into $(VENV) (about half a minute)"
	$(BIN)/python -m pip install --progress-bar off --disable-pip-version-check -e .
	@echo "installed"
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	@echo "installing tierproof with its test and benchmark tools into $(VENV)"
	$(BIN)/python -m pip install -q --progress-bar off -e ".[test,bench]"
	touch $(RUN_STAMP) $(DEV_STAMP)

venv: $(DEV_STAMP)

run-venv: $(RUN_STAMP)

## system: Debian packages the tests need (real servers, browser); idempotent
system:
	bash scripts/system-deps.sh

## interop-deps: the third-party peers of tests/interop (node-opcua, Eclipse Tahu's
## sparkplug-client, modbus-serial), exactly as pinned by tests/interop/node/package-lock.json
NODE_DIR := tests/interop/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp
$(NODE_STAMP): $(NODE_DIR)/package-lock.json
	@echo "interop peers: npm ci in $(NODE_DIR)"
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

interop-deps: system $(NODE_STAMP)

## demo: simulated plant -> collectors -> embedded store -> KPIs -> API + dashboard on :8000
demo: run-venv
	$(BIN)/tierproof demo $(ARGS)

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest $(ARGS)

## test: everything CI runs: set-up, lint, types, the whole test suite, in two passes:
##   1. the tests marked `serial` (they assert timing: polls on time under an API flood,
##      bounded scheduling lag), alone, so that no other test's load can make them late;
##   2. every other test on $(WORKERS) pytest-xdist workers. Most tests wait on sockets and
##      real servers more than they compute, so 3 workers on 2 cores overlap those waits
##      (12 min 41 s in one process before; 6 min 45 s for both passes now; docs/architecture.md).
##      --dist loadscope keeps each module on one worker: a module-scoped fixture (the demo
##      subprocess, a backfilled store, a server) starts once, as in one process.
## New tests must stay parallel-safe: free ports, files under tmp_path, no fixed paths.
## Both passes always run; the target fails if either failed. Exit 5 (no test selected, when
## ARGS narrows the run to tests of only one kind) is not a failure on its own.
## `make test WORKERS=0` (no workers) or `make unit` runs every test in one process.
WORKERS ?= 3
test: venv system interop-deps lint typecheck
	@$(BIN)/pytest -m serial $(ARGS); a=$$?; \
	$(BIN)/pytest -n $(WORKERS) --dist loadscope -m "not serial" $(ARGS); b=$$?; \
	if [ $$a -eq 5 ] && [ $$b -eq 5 ]; then exit 5; fi; \
	if [ $$a -ne 0 ] && [ $$a -ne 5 ]; then exit $$a; fi; \
	if [ $$b -ne 0 ] && [ $$b -ne 5 ]; then exit $$b; fi

## bench-system: wrk (Debian), the HTTP load generator of bench/bench_api_scale.py: a C client
## that measures the server, where a Python one saturates its own core first; idempotent
bench-system:
	@command -v wrk >/dev/null 2>&1 || { SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo"; \
	  echo "bench: installing wrk"; $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends wrk; }

## bench: benchmarks, printing figures and ratios against the raw client loops
bench: venv bench-system
	$(BIN)/python bench/bench_modbus.py
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_storage.py
	$(BIN)/python bench/bench_opcua.py --servers 2
	$(BIN)/python bench/bench_influx.py
	$(BIN)/python bench/bench_spool.py
	$(BIN)/python bench/bench_mqtt.py
	$(BIN)/python bench/bench_assess.py
	$(BIN)/python bench/bench_rollup_ingest.py
	$(BIN)/python bench/bench_auth.py
	$(BIN)/python bench/bench_plant.py
	$(BIN)/python bench/bench_influx_lines.py
	$(BIN)/python bench/bench_read_cache.py
	$(BIN)/python bench/bench_api_scale.py

## proto: regenerate collector/mqtt/sparkplug/sparkplug_b_pb2.py(i) from its sparkplug_b.proto; protoc comes
## from grpcio-tools in a throwaway venv so that it is not a dependency of tierproof; pinned,
## because the generated code requires a protobuf runtime at least as new as its protoc (7.35)
PROTOC_VENV ?= /tmp/tierproof-protoc
proto:
	test -x $(PROTOC_VENV)/bin/python || $(PY) -m venv $(PROTOC_VENV)
	$(PROTOC_VENV)/bin/python -m pip install -q grpcio-tools==1.85.1
	$(PROTOC_VENV)/bin/python -m grpc_tools.protoc --proto_path=. --python_out=. --pyi_out=. \
		collector/mqtt/sparkplug/sparkplug_b.proto

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache $(NODE_DIR)/node_modules
