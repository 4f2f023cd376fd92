# siesa-sync: one entry point for people and CI alike. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM := $(VENV)/.system-packages

.PHONY: help setup kafka-fetch kafka-up kafka-down up down demo test test-unit bench soak lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,console]'
	touch $(STAMP)

# Chromium and promtool for the tests (apt-get when root on Debian; else says what to do).
$(SYSTEM): $(STAMP) devtools/sysdeps.py
	$(PY) devtools/sysdeps.py
	touch $(SYSTEM)

setup: $(STAMP) $(SYSTEM) ## create the venv, install the project with its dev tools, chromium and promtool

kafka-fetch: $(STAMP) ## fetch the Kafka broker jars with Maven (cached in .cache/)
	$(PY) -m devtools.broker fetch

BROKERS ?= 1
SECURE ?=
kafka-up: $(STAMP) ## local Kafka on 127.0.0.1:9092 (KAFKA_PORT); BROKERS=3: 9092/9094/9096; SECURE=1: SASL_SSL, users, ACLs
	$(PY) -m devtools.broker up --brokers $(BROKERS) $(if $(SECURE),--secure)

kafka-down: $(STAMP) ## stop the local Kafka broker(s)
	$(PY) -m devtools.broker down

up: $(STAMP) ## start broker, simulators and services with the demo tenants; leave them running
	$(PY) -m devtools.demo up

down: $(STAMP) ## stop everything `make up` started
	$(PY) -m devtools.demo down

demo: $(STAMP) ## run the whole pipeline: sync 5,000+ items into Kong and WMS, show live changes, stop
	$(PY) -m devtools.demo demo

test: $(STAMP) $(SYSTEM) ## the whole test suite (unit, integration on a real broker, e2e)
	$(PY) -m pytest

test-unit: $(STAMP) ## unit tests only (no broker)
	$(PY) -m pytest tests/unit

bench: $(STAMP) ## benchmarks, each against its baseline in the same run (BENCH="a b" to pick)
	$(PY) -m devtools.bench $(BENCH)

SOAK_MINUTES ?= 30
soak: $(STAMP) ## mixed load and periodic faults for SOAK_MINUTES (30), then target == source; soak-results.json
	$(PY) -m devtools.soak --minutes $(SOAK_MINUTES)

lint: $(STAMP) ## ruff check, ruff format --check, mypy (strict) on services/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## remove the venv, caches and run folders (not the Kafka jar cache)
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache
