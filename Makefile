# Outbox analytics pipeline — developer entry points.
# `make run` brings the local pipeline up; `make test` runs the whole test suite against real
# services. Both install what a fresh Debian/Ubuntu machine lacks first.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVICES := scripts/services.sh

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-22s %s\n", $$1, $$2}'

# --- installation -------------------------------------------------------------------------------

.PHONY: setup
setup: system python kafka-jars ## install everything: Debian packages, Python deps, Kafka jars

.PHONY: system
system: ## Debian packages: MariaDB, Redis, MySQL headers, Java 17, Maven
	@bash scripts/install-system.sh

.PHONY: python
python: $(VENV)/.installed ## the Python virtualenv with the project and its dev dependencies

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

.PHONY: kafka-jars
kafka-jars: ## resolve the pinned Apache Kafka broker jars from Maven Central
	@bash scripts/services/kafka.sh install

# --- local services (no Docker) -----------------------------------------------------------------

.PHONY: services-start
services-start: ## start MariaDB, Redis and the 3-node KRaft Kafka cluster (KAFKA_NODES=1 for one node)
	@bash $(SERVICES) start

.PHONY: services-stop
services-stop: ## stop every local service
	@bash $(SERVICES) stop

.PHONY: services-status
services-status: ## show the local services
	@bash $(SERVICES) status

.PHONY: migrate
migrate: python ## apply the Django migrations to MariaDB
	@$(PY) manage.py migrate --noinput

# --- the pipeline -------------------------------------------------------------------------------

.PHONY: run
run: setup services-start migrate ## start the local pipeline
	@echo "services are up; the pipeline's roles are started by later targets"

# --- quality ------------------------------------------------------------------------------------

.PHONY: test
test: setup services-start ## run the whole test suite against the real local services
	@$(PY) -m pytest

.PHONY: lint
lint: python ## ruff (lint + format check) and mypy --strict on consumers/
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy consumers
