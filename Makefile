# The project's commands. `make demo` and `make test` are the two a newcomer needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AGENT_PROVIDER_HOME := $(CURDIR)

.PHONY: install demo test lint types unit services browser ui bench bench-full reference clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
	uv venv -q --allow-existing -p python3.11 $(VENV)
	uv pip install -q -p $(VENV) -r constraints.txt -e .
	@touch $@

install: $(VENV)/.installed

## Run the reference DAG on the embedded default (SQLite, local staging, sample data).
demo: install
	@bash scripts/demo.sh

## Lint, types and the whole test suite (starts PostgreSQL/Redis on loopback when they are down).
test: install services browser lint types
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check airflow_agent_provider tests dags benchmarks scripts
	$(BIN)/ruff format --check airflow_agent_provider tests dags benchmarks scripts

types: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m "not slow"

services:
	@bash scripts/ensure-services.sh

## Debian's chromium for the UI test (no browser download: the machine's registries only).
browser:
	@bash scripts/ensure-browser.sh

ui: install services
	@bash scripts/ui.sh

bench: install services
	$(PY) -m benchmarks --quick

bench-full: install services
	$(PY) -m benchmarks --full

## Regenerate docs/reference.md (quality rules, source types) from contracts/specs.py.
reference: install
	$(PY) scripts/reference.py

clean:
	rm -rf .airflow .staging var
