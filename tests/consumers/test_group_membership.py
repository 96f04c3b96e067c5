"""Group membership faults of kafka-python 3 that leave a consumer polling without being a member.

A join the client stopped driving (need_rejoin() turned false while the JoinGroup was in flight)
keeps the member "rebalancing" with its heartbeat off: the loop takes the join up again at once.
A member whose heartbeat stopped for any other reason is dropped by the broker while poll() keeps
returning, a zombie whose commits are refused: the loop notices the silence and rejoins."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from consumers.kafka_io import DeadLetterQueue, make_consumer, make_producer
from consumers.runner import BatchingConsumer


def _step_until(loop: BatchingConsumer[Any], done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        loop.step()
        if done():
            return True
    return False


def _loop(
    consumer: KafkaConsumer, topic: str, dlq: str, kafka_bootstrap: list[str], written: list[bytes]
) -> tuple[BatchingConsumer[bytes], KafkaProducer]:
    """A loop that collects what it writes, with its dead-letter producer (close it after)."""
    dlq_producer = make_producer(bootstrap_servers=kafka_bootstrap, client_id="zombie-dlq")
    loop: BatchingConsumer[bytes] = BatchingConsumer(
        consumer=consumer,
        topic=topic,
        decode=lambda record: bytes(record.value),
        write=written.extend,
        dead_letters=DeadLetterQueue(dlq_producer, dlq),
        max_batch_size=100,
        max_batch_seconds=0.2,
    )
    return loop, dlq_producer


def test_a_join_the_client_stopped_driving_is_finished_at_once(
    kafka_bootstrap: list[str],
    kafka_admin: Any,
    make_topic: Callable[..., str],
    kafka_group: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic, dlq = make_topic("dropped-join", partitions=2), make_topic("dropped-join-dlq", partitions=1)
    consumer = make_consumer(
        bootstrap_servers=kafka_bootstrap, group_id=kafka_group, client_id="dropped", session_timeout_ms=45000
    )
    written: list[bytes] = []
    loop, dlq_producer = _loop(consumer, topic, dlq, kafka_bootstrap, written)
    coordinator = consumer._coordinator  # private API, test only
    try:
        assert _step_until(loop, lambda: bool(consumer.assignment()), 30), "never joined the group"
        _step_until(loop, lambda: False, 3)  # past the second rebalance that follows a first join
        assert coordinator.stable()

        # The fault: a rejoin starts, the poll that started it times out with the JoinGroup in
        # flight, and the reason to rejoin goes away before the answer (as a leader's own new
        # assignment does to its metadata snapshots). kafka-python then never awaits the join.
        coordinator.request_rejoin()
        coordinator.poll(timeout_ms=0)
        coordinator.rejoin_needed = False
        assert coordinator.rebalance_in_progress() and not coordinator.need_rejoin()

        with caplog.at_level(logging.INFO, logger="consumers.runner"):
            # Well within the 45 s session timeout the broker would otherwise wait for.
            assert _step_until(loop, coordinator.stable, 5), f"still {coordinator.state} after 5 s"
        assert "left unfinished" in caplog.text
        heartbeat_sent = _step_until(loop, lambda: coordinator.heartbeat.last_send > 0, 10)
        assert heartbeat_sent, "no heartbeat after the join"
        group = dict(kafka_admin.describe_groups([kafka_group])[kafka_group])
        assert group["group_state"] == "Stable" and len(group["members"]) == 1
        assert len(consumer.assignment()) == 2
    finally:
        consumer.close(autocommit=False)
        dlq_producer.close(timeout=10)


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
    written: list[bytes] = []
    loop, dlq_producer = _loop(consumer, topic, dlq, kafka_bootstrap, written)
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
