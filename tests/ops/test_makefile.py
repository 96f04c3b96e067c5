"""The seed's operations exist as make targets on both stacks, and on the compose stack they expand
to commands against the compose services (checked with `make -n`: no Docker engine here)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.ops.compose_stack import REPO_DIR, environment, services

SEED_TARGETS = [
    "up",
    "down",
    "restart",
    "ps",
    "logs",
    "clean",
    "init-db",
    "mysql-shell",
    "clickhouse-shell",
    "kafka-topics",
    "kafka-create-topic",
    "kafka-describe-topic",
    "kafka-consumer-groups",
    "kafka-consumer-lag",
    "kafka-cluster-info",
    "register-connector",
    "connector-status",
    "kafka-ui",
    "grafana",
]


def dry_run(stack: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-n", f"STACK={stack}", "TOPIC=orders_analytics", "GROUP=clickhouse-sink", *args],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("stack", ["compose", "local"])
def test_every_seed_operation_is_a_target_on_both_stacks(stack: str) -> None:
    for target in SEED_TARGETS:
        result = dry_run(stack, target)
        assert "No rule to make target" not in result.stderr, f"STACK={stack}: no target {target}"


def test_compose_kafka_targets_use_kafkas_cli_in_a_broker_on_the_internal_listener() -> None:
    result = dry_run("compose", "kafka-topics", "kafka-consumer-lag", "kafka-describe-topic")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "/opt/kafka/bin/" in line]
    assert len(lines) == 3
    for line in lines:
        assert "docker compose exec -T kafka-local1 " in line
        assert "--bootstrap-server kafka-local1:29092" in line
    assert "--describe --group clickhouse-sink" in result.stdout
    assert "kafka-local1" in services()


def test_compose_shells_log_in_with_the_credentials_the_containers_got_from_env() -> None:
    result = dry_run("compose", "mysql-shell", "clickhouse-shell")
    assert result.returncode == 0, result.stderr
    assert (
        """exec mysql-local sh -c 'MYSQL_PWD="$MYSQL_PASSWORD" exec mysql -u"$MYSQL_USER" """ in result.stdout
    )
    assert (
        """exec clickhouse-local sh -c 'exec clickhouse-client --user "$CLICKHOUSE_USER" """ in result.stdout
    )
    assert '--password "$CLICKHOUSE_PASSWORD" --database "$CLICKHOUSE_DB"' in result.stdout
    # The variables the shells read are the ones the containers are created with.
    assert {"MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE"} <= set(environment(services()["mysql-local"]))
    clickhouse = set(environment(services()["clickhouse-local"]))
    assert {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DB"} <= clickhouse


def test_grafana_prints_the_admin_password_from_env(tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    env_file.write_text("GRAFANA_ADMIN_PASSWORD=from-the-env-file\n")
    result = subprocess.run(
        ["make", "-s", "STACK=compose", f"ENV_FILE={env_file}", "grafana"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Grafana: http://localhost:3001 (admin / from-the-env-file)"
    missing = subprocess.run(
        ["make", "-s", "STACK=compose", f"ENV_FILE={tmp_path / 'none'}", "grafana"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "make env" in missing.stderr


def test_register_connector_puts_the_connector_config_by_name() -> None:
    connector = json.loads((REPO_DIR / "kafka-connect" / "clickhouse-sink.json").read_text())
    result = dry_run("compose", "register-connector", "connector-status")
    assert result.returncode == 0, result.stderr
    assert f"http://localhost:8083/connectors/{connector['name']}/config" in result.stdout
    assert f"http://localhost:8083/connectors/{connector['name']}/status" in result.stdout
    assert "127.0.0.1:8083:8083" in services()["kafka-connect"]["ports"]


def test_up_connect_replaces_the_python_sink_so_no_table_is_written_twice() -> None:
    result = dry_run("compose", "up-connect")
    assert "--profile connect up" in result.stdout and "--scale sink=0" in result.stdout


def test_up_cdc_runs_debezium_instead_of_our_relay_and_registers_it_inside_its_container() -> None:
    connector = json.loads((REPO_DIR / "kafka-connect" / "debezium-outbox.json").read_text())
    result = dry_run("compose", "up-cdc", "register-cdc-connector", "cdc-connector-status")
    assert result.returncode == 0, result.stderr
    assert "--profile connect up" in result.stdout
    assert "--scale worker=0" in result.stdout and "--scale beat=0" in result.stdout
    assert "exec -T debezium curl" in result.stdout
    assert f"http://127.0.0.1:8083/connectors/{connector['name']}/config" in result.stdout
    assert f"http://127.0.0.1:8083/connectors/{connector['name']}/status" in result.stdout


def test_compose_only_targets_refuse_clearly_on_the_local_stack() -> None:
    for target in ("register-connector", "register-cdc-connector", "up-cdc", "kafka-ui", "grafana", "clean"):
        result = subprocess.run(
            ["make", "-s", "STACK=local", target], cwd=REPO_DIR, capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0, target
        assert "only the compose stack has" in result.stderr, target


def test_stack_must_be_compose_or_local() -> None:
    result = dry_run("kubernetes", "ps")
    assert result.returncode != 0
    assert "STACK must be compose or local" in result.stderr


def test_init_db_runs_the_init_services_commands_on_both_stacks() -> None:
    init = " ".join(services()["init"]["command"])
    steps = re.findall(r"manage\.py (\w+)", init)
    assert steps == ["migrate", "clickhouse_migrate", "kafka_topics"]
    assert "docker compose run --rm init" in dry_run("compose", "init-db").stdout
    local = dry_run("local", "-o", ".venv/.installed", "init-db").stdout
    assert re.findall(r"manage\.py (\w+)", local) == steps
