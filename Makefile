# Two set-up commands: `make run` and `make test`. Everything else is for developers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
BENCH_ARGS ?=
ARGS ?=

.PHONY: run test lint bench proto stack system-deps venv format clean compose-test wheels

$(STAMP): pyproject.toml client/pyproject.toml requirements/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints.txt -e './client[fastapi]' -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@bash scripts/ensure-system-deps.sh

## Start the decision service on the embedded memory backend and print grpcurl examples.
run: $(STAMP)
	@bash scripts/run-banner.sh
	$(VENV)/bin/limiter-service

## Install whatever is missing, then run every test (unit and integration).
test: $(STAMP) system-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy client/ratelimit_client limiter_service api devstack bench tests scripts

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Regenerate the protobuf code from protos/ (a test fails when it is stale).
proto: $(STAMP)
	$(PY) scripts/generate_proto.py

## Throughput and latency against real Redis, side by side with baselines.
bench: $(STAMP) system-deps
	$(PY) -m bench $(BENCH_ARGS)

## The full topology as local processes: Redis + sentinels, limiters, APIs, Nginx.
## Envoy as the edge instead: make stack ARGS='--edge envoy' (ARGS: python -m devstack's flags).
stack: $(STAMP) system-deps
	$(PY) -m devstack $(ARGS)

## Build the two distributions into dist/: ratelimit-client and the server.
wheels: $(STAMP)
	$(PY) -m build --wheel --no-isolation --outdir dist client
	$(PY) -m build --wheel --no-isolation --outdir dist .

## deploy/docker-compose.yml for real: images built, brought up with podman, tested, taken down.
compose-test: $(STAMP) system-deps
	bash scripts/compose/run.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
