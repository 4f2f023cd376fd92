# siesa-sync: one entry point for people and CI alike. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Python of the main venv, which runs the whole suite, the demo and the tools.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
SYSTEM := $(VENV)/.system-packages
# uv (installed from the lock into the venv) uses the Pythons it is given, never fetches one.
export UV_PYTHON_DOWNLOADS := never

# The other supported Pythons found on this machine (pyenv's, else one on PATH that is no
# pyenv shim): `make test` runs the unit tests under each, in its own .venv-3.X.
OTHER_PYTHONS := 3.12 3.13
find_python = $(shell { ls -d "$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}")"/versions/$(1).*/bin/python$(1) 2>/dev/null | sort -V | tail -n1; command -v python$(1) 2>/dev/null | grep -v /shims/; } | head -n1)
FOUND_PYTHONS := $(foreach v,$(OTHER_PYTHONS),$(if $(call find_python,$(v)),$(v)))

# The locked sets (requirements/*.txt, compiled by `make lock`): dev is everything a
# checkout needs; runtime, sim and tools are what the image and the install test use.
LOCK := requirements/dev.txt
LOCKS := $(LOCK) requirements/runtime.txt requirements/sim.txt requirements/tools.txt

.PHONY: help setup lock kafka-fetch kafka-up kafka-down up down demo test test-unit test-pythons bench soak lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# A venv with exactly the locked set: uv (and the build backend) from the tools lock by
# pip with hashes, then the dev lock by uv (hashes checked), then the project itself,
# editable, without resolving anything again.
$(STAMP): pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/tools.txt
	$(UV) pip sync --quiet --python $(PY) --require-hashes $(LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps --no-build-isolation -e .
	touch $(STAMP)

.venv-%/.installed: pyproject.toml $(LOCKS) | $(STAMP)
	$(call find_python,$*) -m venv .venv-$*
	$(UV) pip sync --quiet --python .venv-$*/bin/python --require-hashes $(LOCK)
	$(UV) pip install --quiet --python .venv-$*/bin/python --no-deps --no-build-isolation -e .
	touch $@

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

lock: $(STAMP) ## recompile requirements/*.txt from pyproject.toml (all Pythons and platforms)
	$(UV) pip compile --quiet $(LOCK_ARGS) pyproject.toml --extra dev -o $(LOCK)
	$(UV) pip compile --quiet $(LOCK_ARGS) pyproject.toml -c $(LOCK) -o requirements/runtime.txt
	$(UV) pip compile --quiet $(LOCK_ARGS) pyproject.toml --extra sim -c $(LOCK) -o requirements/sim.txt
	printf 'hatchling\nuv\n' | $(UV) pip compile --quiet $(LOCK_ARGS) - -c $(LOCK) -o requirements/tools.txt

# One lock for every supported Python and platform, with hashes and without the index
# it was resolved from (installs use the client's configured index).
LOCK_ARGS := --universal --python-version 3.11 --generate-hashes --no-emit-package siesa-sync

# The suite on TEST_WORKERS pytest-xdist workers, each with its own broker: its e2e tests
# mostly wait on processes (one worker kept these 2 cores 60 % busy), so two take about
# half the time. Work stealing: an idle worker takes tests queued on the other (the
# default split left one worker alone with 10 min of e2e tests). TEST_WORKERS=0: one
# process.
TEST_WORKERS ?= 2
test: $(STAMP) $(SYSTEM) test-pythons ## unit tests under every other Python found, then the whole suite (TEST_WORKERS=2)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=25

# The Pythons' unit runs go side by side (one core each on a 2-core machine, about half
# the time); each one's output is shown once it ended, in full if it failed.
test-pythons: $(foreach v,$(FOUND_PYTHONS),.venv-$(v)/.installed) ## unit tests under each other supported Python found (3.12, 3.13)
	@echo "other Pythons found: $(or $(FOUND_PYTHONS),none)"
	@mkdir -p .run; set -u; pids=""; for v in $(FOUND_PYTHONS); do \
		echo "== unit tests under Python $$v (output in .run/unit-$$v.log)"; \
		.venv-$$v/bin/python -m pytest tests/unit -q -p no:cacheprovider > .run/unit-$$v.log 2>&1 & \
		pids="$$pids $$v:$$!"; \
	done; failed=""; for run in $$pids; do \
		v=$${run%%:*}; if wait $${run#*:}; then \
			echo "== Python $$v: $$(tail -n 1 .run/unit-$$v.log)"; \
		else \
			cat .run/unit-$$v.log; echo "== Python $$v: unit tests FAILED"; failed="$$failed $$v"; \
		fi; \
	done; test -z "$$failed"

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

clean: ## remove the venvs, caches, build output and run folders (not the Kafka jar cache)
	rm -rf $(VENV) $(foreach v,$(OTHER_PYTHONS),.venv-$(v)) .run .pytest_cache .mypy_cache .ruff_cache dist
