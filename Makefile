# The commands developers and CI run. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run demo test test-unit test-integration lint bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install stopguard with its test tools

run: $(STAMP) ## Run a worker (starts the embedded broker when none is configured)
	$(BIN)/stopguard run

demo: $(STAMP) ## Play the demo scenario against a running worker
	$(BIN)/stopguard demo

test: $(STAMP) ## Run the whole test suite (unit and integration)
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## Run the tests that need no broker
	$(BIN)/python -m pytest tests/unit

test-integration: $(STAMP) ## Run the tests against a broker and real workers
	$(BIN)/python -m pytest tests/integration

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check app tests
	$(BIN)/ruff format --check app tests
	$(BIN)/mypy app

bench: $(STAMP) ## Run the benchmark and print its figures
	$(BIN)/stopguard bench

clean: ## Remove the virtualenv and local state
	rm -rf $(VENV) .stopguard .pytest_cache .mypy_cache .ruff_cache
