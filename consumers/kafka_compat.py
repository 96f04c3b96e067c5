"""Workarounds for faults of kafka-python 3 (pyproject pins >=3.0,<4; seen on 3.0.12), in one place.

This is the only module that touches kafka-python's private attributes. Each workaround names the
fault it answers, so it can go once the client no longer has it; tests/consumers/test_kafka_compat.py
reproduces each one.

1. Topic metadata before joining. A member that joins its group before its client has the topic's
   metadata can be handed no partitions ("No partition metadata for topic") and then stays idle
   until the next metadata refresh, minutes later, while its group's lag grows. GroupMembership
   loads the metadata before it subscribes.

2. A join the client stops driving. kafka-python 3 drives a join only while need_rejoin() is true,
   and a poll that times out leaves the JoinGroup/SyncGroup in flight for the next poll to await.
   When the reason to rejoin goes away during that round trip, no poll awaits it again: the member
   keeps "rebalancing" with its heartbeat off and its old partitions, the broker drops it after a
   session timeout, and the rest of the group waits that long in its own JoinGroup. The usual
   trigger is a leader's first join, assigned before the topic's metadata arrived: it rejoins for
   the metadata, and its own new assignment makes the snapshots it compares equal again before the
   join answers. GroupMembership asks to rejoin, which makes the next poll finish the join. The
   group's state has no public accessor: this reads the consumer's private coordinator.

3. A member dropped without noticing. When a member's heartbeat stops, the broker drops it while
   poll() keeps returning; the client learns it only from a refused commit, and a member with
   nothing to commit never does. It stays a zombie that holds its partitions in its own eyes while
   their lag grows. Fault 2 is the one cause found; GroupMembership also rejoins whenever the
   heartbeat (a public metric) has been silent too long, as the safety net for any other.

4. Partition leaders. KafkaConsumer lists a topic's partitions but not their leaders, and a
   partition whose leader is not elected yet is no partition to a consumer. partition_leader reads
   the leader from the client's private cluster metadata.

5. A group coordinator that moved. KafkaAdminClient caches each group's coordinator in its cluster
   metadata and never drops the entry when that broker answers NotCoordinator: every retry asks the
   same broker again, so a routine coordinator move fails offset reads for good. This once cost
   `make bench` its whole pipeline stage. forget_group_coordinator drops the entry, so the next
   call looks the coordinator up afresh.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.protocol.metadata import CoordinatorType

log = logging.getLogger(__name__)

# How often GroupMembership checks that the group still counts its consumer as a member.
MEMBERSHIP_CHECK_SECONDS = 5.0


def coordinator_of(consumer: KafkaConsumer) -> Any:
    """The consumer's group coordinator (fault 2): kafka-python offers no public accessor."""
    return consumer._coordinator


def partition_leader(consumer: KafkaConsumer, partition: TopicPartition) -> int | None:
    """The node id of the partition's leader as the consumer's metadata has it: -1 while no
    leader is elected, None when the partition is unknown (fault 4)."""
    leader: int | None = consumer._client.cluster.leader_for_partition(partition)
    return leader


def silent_heartbeat(
    *,
    silent: float,
    since_assigned: float | None,
    since_subscribed: float,
    heartbeat_interval: float,
    session_timeout: float,
) -> str | None:
    """Why a member whose last heartbeat went out `silent` seconds ago (inf: never) must rejoin, or
    None while it may still be a member (fault 3): never sent although the group handed it
    partitions a few heartbeat intervals ago, or silent (or never sent) for a whole session timeout
    once the membership is two session timeouts old."""
    # A member that has its partitions sends its first heartbeat within one interval.
    first_heartbeat_due = max(15.0, 3 * heartbeat_interval)
    if math.isinf(silent) and since_assigned is not None and since_assigned >= first_heartbeat_due:
        return "no heartbeat since the group assigned partitions to this member; rejoining"
    if since_subscribed >= 2 * session_timeout and silent > session_timeout:
        # Whatever the member believes (partitions or none), a session timeout without a
        # heartbeat means the group has dropped it.
        silence = "since it joined" if math.isinf(silent) else f"for {silent:.0f}s"
        return (
            f"no heartbeat {silence} (session timeout {session_timeout:.0f}s): "
            "the group has dropped this member; rejoining"
        )
    return None


class GroupMembership:
    """Subscribes a consumer to one topic and keeps it a live member of its group despite faults
    1-3: call after_poll() after every poll.

    `on_revoked` runs whenever the member loses its partitions: when the group takes them back, and
    before a rejoin this class forces (leaving and joining again restarts the heartbeat)."""

    def __init__(self, consumer: KafkaConsumer, topic: str, *, on_revoked: Callable[[], None]) -> None:
        self._consumer = consumer
        self._topic = topic
        self._on_revoked = on_revoked
        self._session_timeout_seconds = float(consumer.config["session_timeout_ms"]) / 1000
        self._heartbeat_interval_seconds = float(consumer.config["heartbeat_interval_ms"]) / 1000
        consumer.partitions_for_topic(topic)  # fault 1
        self._subscribe()

    def _subscribe(self) -> None:
        self._consumer.subscribe([self._topic], listener=_TrackAssignment(self))
        self._subscribed_at = time.monotonic()
        self._assigned_at: float | None = None
        self._next_check = self._subscribed_at + MEMBERSHIP_CHECK_SECONDS

    def assigned(self, when: float | None) -> None:
        """The group handed us partitions (a time) or took them back (None)."""
        self._assigned_at = when

    def revoked(self) -> None:
        self._on_revoked()
        self.assigned(None)

    def after_poll(self) -> None:
        self._resume_dropped_join()
        self._rejoin_if_silent()

    def _resume_dropped_join(self) -> None:
        """Fault 2: takes up a group join that kafka-python started and then stopped driving."""
        coordinator = coordinator_of(self._consumer)
        if coordinator.rebalance_in_progress() and not coordinator.need_rejoin():
            log.info("the group join in flight was left unfinished by the client; resuming it")
            coordinator.request_rejoin()

    def _rejoin_if_silent(self) -> None:
        """Fault 3: leaves and joins the group again when its heartbeat has gone silent (checked
        every MEMBERSHIP_CHECK_SECONDS)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + MEMBERSHIP_CHECK_SECONDS
        metrics = self._consumer.metrics().get("consumer-coordinator-metrics", {})
        silent = metrics.get("last-heartbeat-seconds-ago")
        if silent is None:
            return
        reason = silent_heartbeat(
            silent=silent,
            since_assigned=None if self._assigned_at is None else now - self._assigned_at,
            since_subscribed=now - self._subscribed_at,
            heartbeat_interval=self._heartbeat_interval_seconds,
            session_timeout=self._session_timeout_seconds,
        )
        if reason is None:
            return
        log.warning(reason)
        self._on_revoked()
        self._consumer.unsubscribe()
        self._subscribe()


class _TrackAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, membership: GroupMembership) -> None:
        self._membership = membership

    def on_partitions_revoked(self, revoked: object) -> None:
        self._membership.revoked()

    def on_partitions_assigned(self, assigned: object) -> None:
        self._membership.assigned(time.monotonic())


def forget_group_coordinator(admin: Any, group: str) -> None:
    """Drops the admin client's cached coordinator of `group` (fault 5), so its next request for
    the group finds the coordinator again."""
    admin._manager.cluster._coordinators.pop((CoordinatorType.GROUP, group), None)
