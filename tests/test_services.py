"""The local services are real: round trips through MariaDB, Redis, a replicated Kafka topic and a
chDB ReplacingMergeTree table."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection


@pytest.mark.django_db
def test_mariadb_round_trip_with_mysqlclient() -> None:
    assert connection.vendor == "mysql"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE probe (id INT PRIMARY KEY, note VARCHAR(32)) ENGINE=InnoDB")
        cursor.execute("INSERT INTO probe VALUES (%s, %s)", [1, "hello"])
        cursor.execute("SELECT note FROM probe WHERE id = %s", [1])
        assert cursor.fetchone() == ("hello",)
        cursor.execute("SELECT VERSION()")
        assert "MariaDB" in cursor.fetchone()[0]
    assert connection.connection.__class__.__module__.startswith("MySQLdb")


def test_redis_round_trip() -> None:
    import redis
    from django.conf import settings

    from tests.services import require_redis

    require_redis()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    key = f"probe:{uuid.uuid4().hex}"
    client.set(key, b"value", ex=30)
    assert client.get(key) == b"value"
    client.delete(key)


def test_kafka_replicated_topic_round_trip(
    kafka_bootstrap: list[str], kafka_brokers: int, kafka_admin: Any, make_topic: Any, kafka_group: str
) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType

    topic = make_topic("foundation", partitions=3)
    expected_rf = min(3, kafka_brokers)

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    sent = [f"message-{i}".encode() for i in range(10)]
    for i, value in enumerate(sent):
        metadata = producer.send(topic, key=str(i).encode(), value=value).get(timeout=30)
        assert metadata.topic == topic
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=kafka_group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    received = []
    for record in consumer:
        received.append(record.value)
        if len(received) == len(sent):
            break
    consumer.commit()
    consumer.close()
    assert sorted(received) == sorted(sent)

    described = kafka_admin.describe_topics([topic])[0]
    assert len(described["partitions"]) == 3
    assert all(len(p["replica_nodes"]) == expected_rf for p in described["partitions"])
    assert all(len(p["isr_nodes"]) == expected_rf for p in described["partitions"])

    # kafka-python 3 answers {"topic": {name: {config: {"value": ..., "config_source": ...}}}}.
    configs = kafka_admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entries = {name: entry["value"] for name, entry in configs["topic"][topic].items()}
    assert entries["min.insync.replicas"] == str(min(2, expected_rf))
    if kafka_brokers >= 3:
        assert entries["min.insync.replicas"] == "2"


def test_chdb_replacing_merge_tree_keeps_latest_version(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    table = f"{clickhouse_database}.versions"
    clickhouse_client.command(
        f"CREATE TABLE {table} (id UInt64, state String, version UInt64) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY id"
    )
    # Versions arrive out of order and in separate parts; FINAL must still pick the highest.
    clickhouse_client.insert(table, [[1, "v2", 2], [2, "only", 1]], column_names=["id", "state", "version"])
    clickhouse_client.insert(table, [[1, "v3", 3]], column_names=["id", "state", "version"])
    clickhouse_client.insert(table, [[1, "v1", 1]], column_names=["id", "state", "version"])
    rows = clickhouse_client.query(f"SELECT id, state FROM {table} FINAL ORDER BY id").result_rows
    assert rows == [(1, "v3"), (2, "only")]
    clickhouse_client.command(f"OPTIMIZE TABLE {table} FINAL")
    assert clickhouse_client.query(f"SELECT count() FROM {table}").result_rows == [(2,)]
