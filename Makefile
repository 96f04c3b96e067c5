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
setup: system python kafka-jars connect-jars ## install everything: Debian packages, Python deps, Kafka and Kafka Connect jars

.PHONY: system
system: ## Debian packages: MariaDB, Redis, MySQL headers, Java 17, Maven, Chromium and chromedriver
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

.PHONY: connect-jars
connect-jars: ## resolve the pinned Kafka Connect worker and Debezium connector jars (the CDC relay) from Maven Central
	@bash scripts/services/connect.sh install

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
migrate: python ## apply the Django migrations to MariaDB (first creates the local Django secret key in var/)
	@$(PY) -m environment.local_secret >/dev/null
	@$(PY) manage.py migrate --noinput

# --- the pipeline -------------------------------------------------------------------------------

.PHONY: run pipeline-start pipeline-stop pipeline-status stop test-pipeline test-deletion-flow
run: setup services-start migrate ## start the local pipeline: every role in the foreground, Ctrl-C stops the roles
	@$(PY) -m scripts.pipeline run
pipeline-start: setup services-start migrate ## start the local pipeline in the background; returns when ready
	@$(PY) -m scripts.pipeline run --detach
pipeline-stop: ## stop a pipeline started with pipeline-start
	@$(PY) -m scripts.pipeline stop
pipeline-status: ## is the background pipeline running and ready?
	@$(PY) -m scripts.pipeline status
# The roles first: they still talk to the services while they stop. Without a virtualenv no
# pipeline can have been started, but services-start may have run.
stop: ## stop everything make run / pipeline-start started: the pipeline's roles, then MariaDB, Redis, Kafka
	@if [ -x $(PY) ]; then $(PY) -m scripts.pipeline stop; fi
	@bash $(SERVICES) stop

N ?= 1000
test-pipeline: python ## check a running pipeline end to end with N orders (default 1000)
	@$(PY) -m scripts.check_pipeline --orders $(N)
test-deletion-flow: python ## delete orders through the admin API and check every stage honours it
	@bash scripts/test-deletion-flow.sh

# --- benchmarks ---------------------------------------------------------------------------------

.PHONY: bench bench-smoke
bench: setup services-start ## benchmark every stage; BENCH_ARGS="--backlog N --soak-seconds S ..." (python -m bench -h)
	@$(PY) -m bench $(BENCH_ARGS)
bench-smoke: setup services-start ## every benchmark stage at tiny sizes (a few minutes; what CI runs)
	@$(PY) -m bench --smoke $(BENCH_ARGS)

# --- fault run ----------------------------------------------------------------------------------

.PHONY: chaos
chaos: setup ## the fault run: poison, a partition outage, lease expiry, totals; a private Kafka cluster (a few minutes)
	@$(PY) -m scripts.chaos $(CHAOS_ARGS)

# --- quality ------------------------------------------------------------------------------------

.PHONY: test
test: setup services-start ## run the whole test suite against the real local services
	@$(PY) -m pytest

.PHONY: lint
lint: python ## ruff, mypy over every package, hadolint on the Dockerfile, the compose file against its spec
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy
	@$(VENV)/bin/hadolint --no-color Dockerfile
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

# --- operations: the seed's targets, on the compose stack or the local stack --------------------
# STACK=compose drives docker-compose.yml; STACK=local the services of scripts/services.sh, with
# chDB for ClickHouse. Default: compose when a Docker engine answers `docker info`, else local.
# Targets that only exist in the compose stack (Kafka Connect, Kafka UI, Grafana) say so and fail
# on the local stack.

ifeq ($(origin STACK),undefined)
STACK := $(shell docker info >/dev/null 2>&1 && echo compose || echo local)
endif
ifeq ($(filter $(STACK),compose local),)
$(error STACK must be compose or local, got '$(STACK)')
endif

COMPOSE ?= docker compose
KAFKA_ADMIN := $(PY) -m scripts.kafka_admin
# Kafka's own CLI inside the first broker's container, talking to the internal listener.
KAFKA_CLI := $(COMPOSE) exec -T kafka-local1 /opt/kafka/bin
KAFKA_INTERNAL := kafka-local1:29092
CONNECT_URL ?= http://localhost:8083
CONNECTOR_FILE := kafka-connect/clickhouse-sink.json
CONNECTOR_NAME = $(shell $(PYTHON) -c 'import json; print(json.load(open("$(CONNECTOR_FILE)"))["name"])')
CDC_CONNECTOR_FILE := kafka-connect/debezium-outbox.json
CDC_CONNECTOR_NAME = $(shell $(PYTHON) -c 'import json; print(json.load(open("$(CDC_CONNECTOR_FILE)"))["name"])')
# Debezium's REST API is published nowhere: curl runs in its container.
CDC_CONNECT = $(COMPOSE) --profile connect exec -T debezium curl -fsS
PARTITIONS ?= 3

# $(call need,VAR,example): fail with a usage line when a required variable is empty.
need = @if [ -z "$($(1))" ]; then echo "usage: make $@ $(1)=$(2)" >&2; exit 2; fi
compose_only = @echo "make $@: only the compose stack has $(1) (STACK=$(STACK)); $(2)" >&2; exit 2

# The compose stack's credentials: docker compose reads .env beside docker-compose.yml.
ENV_FILE := .env
need_env_file = @test -f $(ENV_FILE) || { echo "make $@: no $(ENV_FILE) with the stack's credentials; run make env first" >&2; exit 2; }

.PHONY: env
env: ## write .env for the compose stack with new random credentials (never overwrites one)
	@$(PYTHON) -m scripts.compose_env --output $(ENV_FILE)

.PHONY: stack
stack: ## which stack the operation targets use (STACK=compose|local)
	@echo "STACK=$(STACK)"

ifeq ($(STACK),compose)

.PHONY: up up-connect up-cdc down restart ps logs clean init-db mysql-shell clickhouse-shell
up: ## start the stack (compose: every service; local: MariaDB, Redis, Kafka)
	$(need_env_file)
	@$(COMPOSE) up -d --build
	@$(COMPOSE) ps
up-connect: ## compose: start with Kafka Connect's ClickHouse sink instead of the Python sink
	$(need_env_file)
	@$(COMPOSE) --profile connect up -d --build --scale sink=0
	@$(COMPOSE) --profile connect ps
up-cdc: ## compose: start with Debezium as the relay instead of worker and beat (then register-cdc-connector)
	$(need_env_file)
	@$(COMPOSE) --profile connect up -d --build --scale worker=0 --scale beat=0 --scale kafka-connect=0
	@$(COMPOSE) --profile connect ps
down: ## stop the stack
	@$(COMPOSE) --profile connect down
restart: down up ## stop, then start the stack
ps: ## the stack's services and their health
	@$(COMPOSE) --profile connect ps
logs: ## follow the logs (SERVICE=name for one service)
	@$(COMPOSE) logs -f --tail=200 $(SERVICE)
clean: ## stop the stack and delete its data volumes
	@$(COMPOSE) --profile connect down -v --remove-orphans
init-db: ## MySQL migrations, the ClickHouse DDL and the Kafka topics
	@$(COMPOSE) run --rm init
# The shells log in with the account the container was created with: its environment holds the
# credentials from .env, so no password is on this machine's command lines.
mysql-shell: ## SQL shell on the ecommerce database
	@$(COMPOSE) exec mysql-local sh -c 'MYSQL_PWD="$$MYSQL_PASSWORD" exec mysql -u"$$MYSQL_USER" "$$MYSQL_DATABASE"'
clickhouse-shell: ## SQL shell on the analytics database (QUERY="…" for one query)
	@$(COMPOSE) exec clickhouse-local sh -c 'exec clickhouse-client --user "$$CLICKHOUSE_USER" \
		--password "$$CLICKHOUSE_PASSWORD" --database "$$CLICKHOUSE_DB" "$$@"' clickhouse-shell \
		$(if $(QUERY),--query "$(QUERY)")

.PHONY: kafka-topics kafka-create-topic kafka-describe-topic kafka-consumer-groups kafka-consumer-lag kafka-cluster-info
kafka-topics: ## list the topics
	@$(KAFKA_CLI)/kafka-topics.sh --bootstrap-server $(KAFKA_INTERNAL) --list
kafka-create-topic: ## create TOPIC= with PARTITIONS= (default 3), RF 3, min ISR 2
	$(call need,TOPIC,name PARTITIONS=3)
	@$(KAFKA_CLI)/kafka-topics.sh --bootstrap-server $(KAFKA_INTERNAL) --create --if-not-exists \
		--topic $(TOPIC) --partitions $(PARTITIONS) --replication-factor 3 --config min.insync.replicas=2
kafka-describe-topic: ## partitions, leaders, replicas and ISR of TOPIC=
	$(call need,TOPIC,name)
	@$(KAFKA_CLI)/kafka-topics.sh --bootstrap-server $(KAFKA_INTERNAL) --describe --topic $(TOPIC)
kafka-consumer-groups: ## list the consumer groups
	@$(KAFKA_CLI)/kafka-consumer-groups.sh --bootstrap-server $(KAFKA_INTERNAL) --list
kafka-consumer-lag: ## lag per partition of GROUP=
	$(call need,GROUP,name)
	@$(KAFKA_CLI)/kafka-consumer-groups.sh --bootstrap-server $(KAFKA_INTERNAL) --describe --group $(GROUP)
kafka-cluster-info: ## brokers and the KRaft quorum
	@$(KAFKA_CLI)/kafka-metadata-quorum.sh --bootstrap-server $(KAFKA_INTERNAL) describe --status
	@$(KAFKA_CLI)/kafka-metadata-quorum.sh --bootstrap-server $(KAFKA_INTERNAL) describe --replication

.PHONY: register-connector connector-status register-cdc-connector cdc-connector-status kafka-ui grafana
register-connector: ## create or update the ClickHouse sink connector (kafka-connect/clickhouse-sink.json)
	@$(PYTHON) -c 'import json; print(json.dumps(json.load(open("$(CONNECTOR_FILE)"))["config"]))' \
		| curl -fsS -X PUT -H 'Content-Type: application/json' --data @- \
			$(CONNECT_URL)/connectors/$(CONNECTOR_NAME)/config
	@echo
connector-status: ## the connector's and its tasks' state
	@curl -fsS $(CONNECT_URL)/connectors/$(CONNECTOR_NAME)/status; echo
register-cdc-connector: ## create or update Debezium's outbox connector (kafka-connect/debezium-outbox.json)
	@$(PYTHON) -c 'import json; print(json.dumps(json.load(open("$(CDC_CONNECTOR_FILE)"))["config"]))' \
		| $(CDC_CONNECT) -X PUT -H 'Content-Type: application/json' --data @- \
			http://127.0.0.1:8083/connectors/$(CDC_CONNECTOR_NAME)/config
	@echo
cdc-connector-status: ## Debezium's connector's and its task's state
	@$(CDC_CONNECT) http://127.0.0.1:8083/connectors/$(CDC_CONNECTOR_NAME)/status; echo
kafka-ui: ## Kafka UI address
	@echo "Kafka UI: http://localhost:8080"
grafana: ## Grafana address and login (the password from .env)
	@test -f $(ENV_FILE) || { echo "make grafana: no $(ENV_FILE); make env writes one" >&2; exit 2; }
	@echo "Grafana: http://localhost:3001 (admin / $$(sed -n 's/^GRAFANA_ADMIN_PASSWORD=//p' $(ENV_FILE)))"

else  # STACK=local

.PHONY: up down restart ps logs init-db mysql-shell clickhouse-shell
up: services-start
down: services-stop
restart: services-stop services-start
ps: services-status
logs:
	@tail -n 50 -F var/log/*.log
init-db: migrate
	@$(PY) manage.py clickhouse_migrate
	@$(PY) manage.py kafka_topics
mysql-shell: python
	@$(PY) manage.py dbshell
clickhouse-shell: python
	@$(PY) -m warehouse shell $(if $(QUERY),-q "$(QUERY)")

.PHONY: up-connect up-cdc clean register-connector connector-status register-cdc-connector cdc-connector-status kafka-ui grafana
up-connect:
	$(call compose_only,Kafka Connect,the local stack loads ClickHouse with the Python sink)
up-cdc register-cdc-connector cdc-connector-status:
	$(call compose_only,this Debezium service,the local stack runs Debezium with scripts/services/connect.sh start)
clean:
	$(call compose_only,data volumes,on the local stack run scripts/services.sh stop and delete var/ yourself)
register-connector connector-status:
	$(call compose_only,Kafka Connect,the local stack loads ClickHouse with the Python sink)
kafka-ui:
	$(call compose_only,Kafka UI,use make kafka-topics / kafka-cluster-info)
grafana:
	$(call compose_only,Grafana,push the dashboards to a Grafana of your own with make grafana-sync)

.PHONY: kafka-topics kafka-create-topic kafka-describe-topic kafka-consumer-groups kafka-consumer-lag kafka-cluster-info
kafka-topics: python
	@$(KAFKA_ADMIN) topics
kafka-create-topic: python
	$(call need,TOPIC,name PARTITIONS=3)
	@$(KAFKA_ADMIN) create-topic $(TOPIC) --partitions $(PARTITIONS)
kafka-describe-topic: python
	$(call need,TOPIC,name)
	@$(KAFKA_ADMIN) describe-topic $(TOPIC)
kafka-consumer-groups: python
	@$(KAFKA_ADMIN) consumer-groups
kafka-consumer-lag: python
	$(call need,GROUP,name)
	@$(KAFKA_ADMIN) consumer-lag $(GROUP)
kafka-cluster-info: python
	@$(KAFKA_ADMIN) cluster-info

endif

.PHONY: grafana-sync
grafana-sync: python ## push datasources and dashboards to the Grafana at GRAFANA_URL (see scripts/grafana_sync.py)
	@$(PY) -m scripts.grafana_sync
