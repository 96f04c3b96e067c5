"""consumers.kafka_compat: each kafka-python 3 fault it works around, reproduced against the real
cluster, and the workaround seen to answer it.

A join the client stopped driving (need_rejoin() turned false while the JoinGroup was in flight)
keeps the member "rebalancing" with its heartbeat off: the loop takes the join up again at once.
A member whose heartbeat stopped for any other reason is dropped by the broker while poll() keeps
returning, a zombie whose commits are refused: the loop notices the silence and rejoins. The faults
are injected through kafka-python's private coordinator, as nothing public can produce them."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import NotCoordinatorError
from kafka.protocol.metadata import CoordinatorType

from consumers.kafka_compat import (
    coordinator_of,
    forget_group_coordinator,
    partition_leader,
    silent_heartbeat,
)
from consumers.kafka_io import retrying
from consumers.runner import BatchingConsumer
from tests.consumers.kafka_helpers import loop_clients


def _step_until(loop: BatchingConsumer[Any], done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        loop.step()
        if done():
            return True
    return False


@dataclass
class Joined:
    consumer: KafkaConsumer
    loop: BatchingConsumer[bytes]
    topic: str
    written: list[bytes]


@pytest.fixture
def joined(
    kafka_bootstrap: list[str], make_topic: Callable[..., str], kafka_group: str
) -> Iterator[Callable[..., Joined]]:
    """Makes a loop over a fresh topic that collects what it writes, steps it until it owns its
    partitions and past the second rebalance that follows a first join; closes it after the test."""
    closing = ExitStack()

    def make(name: str, *, partitions: int, session_timeout_ms: int) -> Joined:
        clients = loop_clients(
            closing, make_topic, kafka_bootstrap, kafka_group, name,
            partitions=partitions, session_timeout_ms=session_timeout_ms,
        )  # fmt: skip
        consumer = clients.consumer
        written: list[bytes] = []
        loop: BatchingConsumer[bytes] = BatchingConsumer(
            consumer=consumer,
            topic=clients.topic,
            decode=lambda record: bytes(record.value),
            write=written.extend,
            dead_letters=clients.dead_letters,
            max_batch_size=100,
            max_batch_seconds=0.2,
        )
        assert _step_until(loop, lambda: bool(consumer.assignment()), 30), "never joined the group"
        _step_until(loop, lambda: False, 3)  # past the second rebalance that follows a first join
        return Joined(consumer, loop, clients.topic, written)

    with closing:
        yield make


def test_a_join_the_client_stopped_driving_is_finished_at_once(
    joined: Callable[..., Joined], kafka_admin: Any, kafka_group: str, caplog: pytest.LogCaptureFixture
) -> None:
    member = joined("dropped-join", partitions=2, session_timeout_ms=45000)
    consumer, loop = member.consumer, member.loop
    coordinator = coordinator_of(consumer)
    assert coordinator.stable()

    # The fault: a rejoin starts, the poll that started it times out with the JoinGroup in
    # flight, and the reason to rejoin goes away before the answer (as a leader's own new
    # assignment does to its metadata snapshots). kafka-python then never awaits the join.
    coordinator.request_rejoin()
    coordinator.poll(timeout_ms=0)
    coordinator.rejoin_needed = False
    assert coordinator.rebalance_in_progress() and not coordinator.need_rejoin()

    with caplog.at_level(logging.INFO, logger="consumers.kafka_compat"):
        # Well within the 45 s session timeout the broker would otherwise wait for.
        assert _step_until(loop, coordinator.stable, 5), f"still {coordinator.state} after 5 s"
    assert "left unfinished" in caplog.text
    heartbeat_sent = _step_until(loop, lambda: coordinator.heartbeat.last_send > 0, 10)
    assert heartbeat_sent, "no heartbeat after the join"
    group = dict(kafka_admin.describe_groups([kafka_group])[kafka_group])
    assert group["group_state"] == "Stable" and len(group["members"]) == 1
    assert len(consumer.assignment()) == 2


def test_a_member_whose_heartbeat_stopped_rejoins_and_commits(
    joined: Callable[..., Joined],
    kafka_bootstrap: list[str],
    kafka_admin: Any,
    kafka_group: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    member = joined("zombie", partitions=1, session_timeout_ms=6000)
    consumer, loop, topic = member.consumer, member.loop, member.topic
    # The fault: the heartbeat loop is off while the group is stable.
    coordinator_of(consumer)._disable_heartbeat()

    def group_state() -> dict[str, Any]:
        return dict(kafka_admin.describe_groups([kafka_group])[kafka_group])

    # The broker drops the silent member after its 6 s session timeout. With nothing to commit,
    # kafka-python never learns it was dropped: only the loop's own check can bring it back.
    assert _step_until(loop, lambda: group_state()["group_state"] == "Empty", 30)
    with caplog.at_level(logging.WARNING, logger="consumers.kafka_compat"):
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
    assert sorted(set(member.written)) == [b"1", b"2", b"3"]


def test_partition_leaders_are_known_once_the_consumer_has_the_topics_metadata(
    kafka_bootstrap: list[str], make_topic: Callable[..., str]
) -> None:
    topic = make_topic("leaders", partitions=2)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        # A new topic reaches every broker's metadata a moment after its creation; topics() refetches.
        deadline = time.monotonic() + 20
        while consumer.partitions_for_topic(topic) != {0, 1} and time.monotonic() < deadline:
            consumer.topics()
            time.sleep(0.2)
        leaders = [partition_leader(consumer, TopicPartition(topic, p)) for p in (0, 1)]
        assert all(leader is not None and leader >= 0 for leader in leaders), leaders
        assert partition_leader(consumer, TopicPartition(topic, 2)) is None
        assert partition_leader(consumer, TopicPartition(f"{topic}-absent", 0)) is None
    finally:
        consumer.close()


SESSION, INTERVAL = 10.0, 1.0


def _verdict(silent: float, since_assigned: float | None, since_subscribed: float) -> str | None:
    return silent_heartbeat(
        silent=silent,
        since_assigned=since_assigned,
        since_subscribed=since_subscribed,
        heartbeat_interval=INTERVAL,
        session_timeout=SESSION,
    )


def test_a_member_that_heartbeats_stays() -> None:
    assert _verdict(0.5, since_assigned=100, since_subscribed=100) is None
    assert _verdict(SESSION, since_assigned=100, since_subscribed=100) is None


def test_no_first_heartbeat_15_seconds_after_the_assignment_rejoins() -> None:
    assert _verdict(math.inf, since_assigned=14.9, since_subscribed=14.9) is None
    reason = _verdict(math.inf, since_assigned=15, since_subscribed=15)
    assert reason == "no heartbeat since the group assigned partitions to this member; rejoining"


def test_a_session_timeout_of_silence_rejoins_once_the_membership_is_two_sessions_old() -> None:
    assert _verdict(SESSION + 1, since_assigned=None, since_subscribed=2 * SESSION - 0.1) is None
    reason = _verdict(SESSION + 1, since_assigned=None, since_subscribed=2 * SESSION)
    assert reason == (
        "no heartbeat for 11s (session timeout 10s): the group has dropped this member; rejoining"
    )
    never = _verdict(math.inf, since_assigned=None, since_subscribed=2 * SESSION)
    assert never is not None and never.startswith("no heartbeat since it joined (session timeout 10s)")


def _admin_with_a_stale_coordinator(bootstrap: list[str], group: str) -> Any:
    """An admin client whose cached coordinator of `group` is a broker that is not it: what a
    coordinator move leaves behind (forced through the private cache, as nothing public can)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    admin.list_group_offsets({group: None})  # caches the real coordinator
    cluster = admin._manager.cluster
    real = cluster.get_coordinator(group, CoordinatorType.GROUP)
    other = next(broker.node_id for broker in cluster.brokers() if broker.node_id != real)
    cluster._coordinators[(CoordinatorType.GROUP, group)] = other
    return admin


@pytest.mark.kafka
def test_a_stale_group_coordinator_is_forgotten_so_the_retry_finds_the_new_one(
    kafka_bootstrap: list[str], kafka_group: str, kafka_brokers: int
) -> None:
    if kafka_brokers < 2:
        pytest.fail("needs the 3-node cluster: one broker is every group's coordinator")
    admin = _admin_with_a_stale_coordinator(kafka_bootstrap, kafka_group)
    try:
        # The fault: the client asks the same wrong broker on every retry.
        with pytest.raises(NotCoordinatorError):
            retrying("reading offsets", lambda: admin.list_group_offsets({kafka_group: None}), timeout=1.0)
        offsets = retrying(
            "reading offsets",
            lambda: admin.list_group_offsets({kafka_group: None}),
            on_retry=lambda _: forget_group_coordinator(admin, kafka_group),
            timeout=10.0,
        )
    finally:
        admin.close()
    assert offsets == {kafka_group: {}}
