"""`manage.py kafka_topics` against the shared 3-node cluster (unique topic names per test):
creates the four topics with RF 3 and min ISR 2, is idempotent, repairs drifted configs and
partition counts; and the sizing rules for a one-node cluster."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from kafka.admin import ConfigResource, ConfigResourceType

from outbox.topics import topic_specs

pytestmark = pytest.mark.kafka


@pytest.fixture
def topic_names(settings: Any, kafka_admin: Any) -> Iterator[list[str]]:
    suffix = uuid.uuid4().hex[:8]
    settings.ORDER_EVENTS_TOPIC = f"test-order.events-{suffix}"
    settings.ANALYTICS_TOPIC = f"test-orders_analytics-{suffix}"
    names = [
        settings.ORDER_EVENTS_TOPIC,
        settings.ORDER_EVENTS_TOPIC + ".dlq",
        settings.ANALYTICS_TOPIC,
        settings.ANALYTICS_TOPIC + ".dlq",
    ]
    yield names
    existing = set(kafka_admin.list_topics())
    kafka_admin.delete_topics([n for n in names if n in existing], timeout_ms=30000)


def _run(*args: str) -> str:
    out = StringIO()
    call_command("kafka_topics", *args, stdout=out)
    return out.getvalue()


def _config(kafka_admin: Any, name: str, key: str) -> str:
    resource = ConfigResource(ConfigResourceType.TOPIC, name)
    configs = kafka_admin.describe_configs([resource], config_filter="all")["topic"][name]
    return str(configs[key]["value"])


def _min_isr(kafka_admin: Any, name: str) -> str:
    return _config(kafka_admin, name, "min.insync.replicas")


def _described(kafka_admin: Any, names: list[str], partitions: int) -> dict[str, Any]:
    """The topics as the cluster describes them, once every broker's metadata shows `partitions`
    partitions of each: a KRaft broker learns of a new topic or partition asynchronously, so the
    broker asked may answer with an empty partition list for a moment after the create returned."""
    deadline = time.monotonic() + 15
    while True:
        described = {t["name"]: t for t in kafka_admin.describe_topics(names)}
        if (
            all(len(described[name]["partitions"]) == partitions for name in names)
            or time.monotonic() > deadline
        ):
            return described
        time.sleep(0.2)


def test_topics_are_created_once_then_repaired(
    topic_names: list[str], kafka_admin: Any, kafka_brokers: int
) -> None:
    assert kafka_brokers == 3
    first = _run()
    assert first.count("created ") == 4, first
    described = _described(kafka_admin, topic_names, 3)
    for name in topic_names:
        partitions = described[name]["partitions"]
        assert len(partitions) == 3
        assert all(len(p["replica_nodes"]) == 3 for p in partitions)
        assert _min_isr(kafka_admin, name) == "2"
    # The analytics topic keeps each order's last row; superseded rows go within 7 days.
    analytics = topic_names[2]
    assert _config(kafka_admin, analytics, "cleanup.policy") == "compact"
    assert _config(kafka_admin, analytics, "max.compaction.lag.ms") == str(7 * 24 * 3600 * 1000)

    second = _run()
    assert second.count("unchanged ") == 4, second

    # Someone lowered min ISR by hand and the analytics topic should now have more partitions.
    kafka_admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic_names[0], configs={"min.insync.replicas": "1"})]
    )
    third = _run("--partitions", "4")
    assert f"updated   {topic_names[0]}" in third and "min.insync.replicas=2" in third, third
    assert _min_isr(kafka_admin, topic_names[0]) == "2"
    described = _described(kafka_admin, topic_names, 4)
    assert all(len(described[name]["partitions"]) == 4 for name in topic_names)


def test_bad_partition_count_is_refused(topic_names: list[str]) -> None:
    with pytest.raises(CommandError, match="--partitions must be at least 1"):
        _run("--partitions", "0")


def test_one_node_cluster_gets_replication_one(settings: Any) -> None:
    specs = topic_specs(brokers=1, partitions=3)
    assert {(s.replication_factor, s.configs["min.insync.replicas"]) for s in specs} == {(1, "1")}
    assert [s.name for s in specs] == [
        settings.ORDER_EVENTS_TOPIC,
        settings.ORDER_EVENTS_TOPIC + ".dlq",
        settings.ANALYTICS_TOPIC,
        settings.ANALYTICS_TOPIC + ".dlq",
    ]
