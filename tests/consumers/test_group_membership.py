"""A consumer whose heartbeat loop stopped (kafka-python can leave it disabled after a quick second
rebalance) is dropped by the broker while poll() keeps returning: a zombie whose commits are
refused, so its lag never falls. The consumer loop notices the silence and rejoins its group."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaProducer

from consumers.kafka_io import DeadLetterQueue, make_consumer, make_producer
from consumers.runner import BatchingConsumer


def _step_until(loop: BatchingConsumer[Any], done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        loop.step()
        if done():
            return True
    return False


def test_a_member_whose_heartbeat_stopped_rejoins_and_commits(
    kafka_bootstrap: list[str],
    kafka_admin: Any,
    make_topic: Callable[..., str],
    kafka_group: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic, dlq = make_topic("zombie", partitions=1), make_topic("zombie-dlq", partitions=1)
    consumer = make_consumer(
        bootstrap_servers=kafka_bootstrap, group_id=kafka_group, client_id="zombie", session_timeout_ms=6000
    )
    dlq_producer = make_producer(bootstrap_servers=kafka_bootstrap, client_id="zombie-dlq")
    written: list[bytes] = []
    loop: BatchingConsumer[bytes] = BatchingConsumer(
        consumer=consumer,
        topic=topic,
        decode=lambda record: bytes(record.value),
        write=written.extend,
        dead_letters=DeadLetterQueue(dlq_producer, dlq),
        max_batch_size=100,
        max_batch_seconds=0.2,
    )
    try:
        assert _step_until(loop, lambda: bool(consumer.assignment()), 30), "never joined the group"
        _step_until(loop, lambda: False, 3)  # past the second rebalance that follows a first join
        # The fault: the heartbeat loop is off while the group is stable (private API, test only).
        consumer._coordinator._disable_heartbeat()

        def group_state() -> dict[str, Any]:
            return dict(kafka_admin.describe_groups([kafka_group])[kafka_group])

        # The broker drops the silent member after its 6 s session timeout. With nothing to commit,
        # kafka-python never learns it was dropped: only the loop's own check can bring it back.
        assert _step_until(loop, lambda: group_state()["group_state"] == "Empty", 30)
        with caplog.at_level(logging.WARNING, logger="consumers.runner"):
            assert _step_until(loop, lambda: group_state()["group_state"] == "Stable", 40), "never rejoined"
        assert "rejoining" in caplog.text
        assert len(group_state()["members"]) == 1

        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        for value in (b"1", b"2", b"3"):
            producer.send(topic, value).get(timeout=30)
        producer.close()

        def committed() -> int:
            offsets = kafka_admin.list_group_offsets(kafka_group).get(kafka_group, {})
            return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)

        assert _step_until(loop, lambda: committed() == 3, 60), f"committed {committed()} of 3"
        assert sorted(set(written)) == [b"1", b"2", b"3"]
    finally:
        consumer.close(autocommit=False)
        dlq_producer.close(timeout=10)
