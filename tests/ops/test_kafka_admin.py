"""The Makefile's kafka-* targets on the local stack, run for real against the running cluster:
a topic of our own with a consumer group that committed part of it, then the make targets must
print what the cluster says (topic listed, RF and ISR, the group's lag per partition)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import kafka_admin

REPO_DIR = Path(__file__).resolve().parents[2]

PRODUCED, CONSUMED = 12, 5


@pytest.fixture(scope="module")
def servers() -> list[str]:
    return kafka_admin.bootstrap_servers(os.environ)


@pytest.fixture(scope="module")
def admin(servers: list[str]) -> Iterator[Any]:
    try:
        client = kafka_admin.connect(servers)
    except kafka_admin.KafkaAdminError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="module")
def topic_with_lag(admin: Any, servers: list[str]) -> Iterator[tuple[str, str]]:
    """A fresh topic with PRODUCED messages on 3 partitions and a group that committed CONSUMED."""
    from kafka import KafkaConsumer, KafkaProducer

    topic, group = f"ops-test-{uuid.uuid4().hex[:10]}", f"ops-test-group-{uuid.uuid4().hex[:10]}"
    print(kafka_admin.create_topic(admin, topic, 3))
    try:
        producer = KafkaProducer(bootstrap_servers=servers, acks="all")
        for i in range(PRODUCED):
            producer.send(topic, key=str(i).encode(), value=b"x").get(timeout=30)
        producer.close()
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=servers,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=1,
        )
        consumed, deadline = 0, time.monotonic() + 60
        while consumed < CONSUMED and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000, max_records=1).values():
                consumed += len(records)
                consumer.commit()
        consumer.close()
        assert consumed == CONSUMED, f"consumed {consumed} of {CONSUMED} within 60 s"
        yield topic, group
    finally:
        admin.delete_topics([topic], timeout_ms=30000)
        admin.delete_groups([group])


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # -o: never reinstall the virtualenv from inside a test (pytest already runs in it).
        ["make", "-s", "-o", ".venv/.installed", "STACK=local", *args],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_partition_lags_count_uncommitted_partitions_from_zero() -> None:
    lags = kafka_admin.partition_lags(
        {("t", 0): 5, ("t", 2): 1}, {("t", 0): 7, ("t", 1): 3, ("t", 2): 1, ("u", 0): 9}
    )
    assert [(x.partition, x.committed, x.lag) for x in lags] == [(0, 5, 2), (1, None, 3), (2, 1, 0)]


def test_make_kafka_targets_answer_from_the_cluster(admin: Any, topic_with_lag: tuple[str, str]) -> None:
    topic, group = topic_with_lag

    listed = make("kafka-topics")
    assert listed.returncode == 0, listed.stderr
    assert topic in listed.stdout.split()

    described = make("kafka-describe-topic", f"TOPIC={topic}")
    assert described.returncode == 0, described.stderr
    brokers = len(admin.describe_cluster()["brokers"])
    assert f"PartitionCount: 3  ReplicationFactor: {min(3, brokers)}" in described.stdout
    assert f"min.insync.replicas={min(2, brokers)}" in described.stdout

    groups = make("kafka-consumer-groups")
    assert groups.returncode == 0, groups.stderr
    assert group in groups.stdout

    lag = make("kafka-consumer-lag", f"GROUP={group}")
    assert lag.returncode == 0, lag.stderr
    assert f"TOTAL LAG {PRODUCED - CONSUMED}" in lag.stdout, lag.stdout
    partition_rows = [line for line in lag.stdout.splitlines() if line.startswith(topic)]
    assert len(partition_rows) == 3, lag.stdout

    info = make("kafka-cluster-info")
    assert info.returncode == 0, info.stderr
    assert f"Cluster id: {admin.describe_cluster()['cluster_id']}" in info.stdout
    assert "KRaft quorum: leader" in info.stdout


def test_make_kafka_targets_refuse_bad_input_clearly() -> None:
    missing = make("kafka-consumer-lag")
    assert missing.returncode != 0
    assert "usage: make kafka-consumer-lag GROUP=" in missing.stderr

    unknown = make("kafka-consumer-lag", f"GROUP=no-such-group-{uuid.uuid4().hex[:8]}")
    assert unknown.returncode != 0
    assert "no consumer group named" in unknown.stderr

    bad_topic = make("kafka-create-topic", "TOPIC=bad/name")
    assert bad_topic.returncode != 0
    assert "not a valid topic name" in bad_topic.stderr

    bad_partitions = make("kafka-create-topic", "TOPIC=ok-name", "PARTITIONS=zero")
    assert bad_partitions.returncode != 0
    assert "expected a whole number" in bad_partitions.stderr
