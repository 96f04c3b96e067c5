"""Fixtures that give each test real, isolated resources on the local services:
a fresh MariaDB test database per run (pytest-django), unique Kafka topics and consumer groups per
test, and a fresh ClickHouse database per test inside one chDB directory per run (chDB allows a
single engine, with a single data directory, per process)."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests import services


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    # pytest-django calls this before it creates the test database: fail with a hint, not a
    # connection traceback, when MariaDB is down.
    services.require_mariadb()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- Kafka ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_brokers() -> int:
    """Number of brokers of the running cluster (fails the run when Kafka is down)."""
    return services.require_kafka()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_brokers: int) -> list[str]:
    return list(settings.KAFKA_BOOTSTRAP_SERVERS)


@pytest.fixture
def kafka_admin(kafka_bootstrap: list[str]) -> Iterator[Any]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=30000)
    yield admin
    admin.close()


@pytest.fixture
def make_topic(kafka_admin: Any, kafka_brokers: int) -> Iterator[Callable[..., str]]:
    """Creates uniquely named topics (replication factor 3 and min ISR 2 on the 3-node cluster)
    and deletes them after the test."""
    from kafka.admin import NewTopic

    created: list[str] = []

    def make(prefix: str = "test", partitions: int = 3, configs: dict[str, str] | None = None) -> str:
        name = unique_name(prefix)
        replication = min(3, kafka_brokers)
        topic_configs = {"min.insync.replicas": str(min(2, replication))}
        topic_configs.update(configs or {})
        kafka_admin.create_topics(
            [NewTopic(name, partitions, replication, topic_configs=topic_configs)], timeout_ms=30000
        )
        created.append(name)
        return name

    yield make
    if created:
        with contextlib.suppress(Exception):  # cleanup is best effort; topic names never repeat
            kafka_admin.delete_topics(created, timeout_ms=30000)


@pytest.fixture
def kafka_group() -> str:
    return unique_name("test-group")


# --- ClickHouse (chDB) ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chdb_dir() -> Iterator[Path]:
    """The run's chDB directory (settings.CHDB_TEST_DIR), removed at the end of the run."""
    path = Path(settings.CHDB_TEST_DIR)
    path.mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def clickhouse_client(chdb_dir: Path) -> Any:
    """One chDB engine for the whole run, through clickhouse-connect's chdb:// backend."""
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=f"chdb://{chdb_dir}")


@pytest.fixture
def clickhouse_database(clickhouse_client: Any) -> Iterator[str]:
    """A fresh ClickHouse database for one test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    clickhouse_client.command(f"CREATE DATABASE {name}")
    yield name
    clickhouse_client.command(f"DROP DATABASE IF EXISTS {name} SYNC")


@pytest.fixture(scope="session")
def analytics_schema(clickhouse_client: Any) -> str:
    """The analytics schema in settings.CLICKHOUSE_DATABASE, for code that reads ClickHouse
    through settings (the analytics API) rather than through a fixture's client."""
    from warehouse.schema import migrate

    migrate(clickhouse_client, settings.CLICKHOUSE_DATABASE)
    return str(settings.CLICKHOUSE_DATABASE)
