"""The consumer loop shared by every role, Arroyo-style: poll → decode (invalid → dead-letter
queue) → batch by size and time → write → commit the exact offsets the write covered.

A batch is committed only after its write returned; anything that stops the loop before that
(a crash, a signal, a rebalance that cannot flush) leaves the batch uncommitted, so Kafka
redelivers it. Writes are idempotent by design (ReplacingMergeTree versions), so redelivery is
harmless."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from consumers.kafka_io import DeadLetterQueue
from contract.events import InvalidEvent

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often the loop checks that its group still counts it as a member.
MEMBERSHIP_CHECK_SECONDS = 5.0


# Fault injection for crash tests: the process kills itself with SIGKILL after this many writes,
# after the write and before the commit, the worst moment for at-least-once delivery.
CRASH_AFTER_WRITES_ENV = "CONSUMER_CRASH_AFTER_WRITES"


class StopRequested(Exception):
    """Raised inside a write (e.g. a retry loop) when shutdown was requested: the batch is abandoned."""


@dataclass
class Batch(Generic[T]):
    items: list[T] = field(default_factory=list)
    # Next offset to commit per partition: covers the batch's items and its dead-lettered records.
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    # First offset per partition: where to rewind to when the batch is dropped uncommitted.
    first_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    started_at: float | None = None

    def add(self, record: ConsumerRecord, item: T | None) -> None:
        if self.started_at is None:
            self.started_at = time.monotonic()
        if item is not None:
            self.items.append(item)
        partition = TopicPartition(record.topic, record.partition)
        self.first_offsets.setdefault(partition, record.offset)
        self.offsets[partition] = record.offset + 1


class BatchingConsumer(Generic[T]):
    def __init__(
        self,
        *,
        consumer: KafkaConsumer,
        topic: str,
        decode: Callable[[ConsumerRecord], T],
        write: Callable[[Sequence[T]], None],
        dead_letters: DeadLetterQueue,
        max_batch_size: int,
        max_batch_seconds: float,
        min_write_interval: float = 0.0,
        stop_event: threading.Event | None = None,
    ) -> None:
        self._consumer = consumer
        self._decode = decode
        self._write = write
        self._dead_letters = dead_letters
        self._max_batch_size = max_batch_size
        self._max_batch_seconds = max_batch_seconds
        self._min_write_interval = min_write_interval
        # Whether the last poll reached the end of what its partitions held (see _due).
        self._caught_up = False
        self._last_flush_at = -float("inf")
        self.stop_event = stop_event or threading.Event()
        self._batch: Batch[T] = Batch()
        self._writes = 0
        self._crash_after_writes = int(os.environ.get(CRASH_AFTER_WRITES_ENV, "0") or 0)
        # Load the topic's metadata before joining the group: a member that joins first can be
        # handed no partitions ("No partition metadata for topic") and then stays idle until the
        # next metadata refresh, minutes later, while its group's lag grows.
        consumer.partitions_for_topic(topic)
        self._topic = topic
        self._session_timeout_seconds = float(consumer.config["session_timeout_ms"]) / 1000
        self._subscribe()

    def _subscribe(self) -> None:
        self._consumer.subscribe([self._topic], listener=_DropOnRevoke(self))
        self._subscribed_at = time.monotonic()
        self._assigned_at: float | None = None
        self._next_membership_check = self._subscribed_at + MEMBERSHIP_CHECK_SECONDS

    def assigned(self, when: float | None) -> None:
        """The group handed us partitions (a time) or took them back (None)."""
        self._assigned_at = when

    def _resume_dropped_join(self) -> None:
        """Takes up a group join that kafka-python started and then stopped driving.

        kafka-python 3 drives a join only while need_rejoin() is true, and a poll that times out
        leaves the JoinGroup/SyncGroup in flight for the next poll to await. When the reason to
        rejoin goes away during that round trip, no poll awaits it again: the member keeps
        "rebalancing" with its heartbeat off and its old partitions, the broker drops it after a
        session timeout, and the rest of the group waits that long in its own JoinGroup. The
        usual trigger is a leader's first join, assigned before the topic's metadata arrived:
        it rejoins for the metadata, and its own new assignment makes the snapshots it compares
        equal again before the join answers. Asking to rejoin makes the next poll finish it."""
        coordinator = self._consumer._coordinator  # no public accessor for the group's state
        if coordinator.rebalance_in_progress() and not coordinator.need_rejoin():
            log.info("the group join in flight was left unfinished by the client; resuming it")
            coordinator.request_rejoin()

    def _check_membership(self) -> None:
        """Rejoins the group when this member's heartbeat is silent: never sent although the group
        handed it partitions a few heartbeat intervals ago, or silent (or never sent) for a whole
        session timeout once the membership is two session timeouts old.

        A member whose heartbeat stops is dropped by the broker while poll() keeps returning, a
        zombie that holds on to its partitions in its own eyes and whose lag grows. The one cause
        found (a join the client stopped driving) is handled at once by _resume_dropped_join; this
        check is the safety net for any other. Leaving and joining again restarts the heartbeat;
        the uncommitted batch is dropped and read again."""
        now = time.monotonic()
        if now < self._next_membership_check:
            return
        self._next_membership_check = now + MEMBERSHIP_CHECK_SECONDS
        coordinator = self._consumer.metrics().get("consumer-coordinator-metrics", {})
        silent = coordinator.get("last-heartbeat-seconds-ago")
        if silent is None:
            return
        interval = float(self._consumer.config["heartbeat_interval_ms"]) / 1000
        since_assigned = None if self._assigned_at is None else now - self._assigned_at
        if math.isinf(silent) and since_assigned is not None and since_assigned >= max(15.0, 3 * interval):
            # A member that has its partitions sends its first heartbeat within one interval.
            log.warning("no heartbeat since the group assigned partitions to this member; rejoining")
        elif now - self._subscribed_at >= 2 * self._session_timeout_seconds and (
            silent > self._session_timeout_seconds
        ):
            # Whatever the member believes (partitions or none), a session timeout without a
            # heartbeat means the group has dropped it.
            log.warning(
                "no heartbeat %s (session timeout %.0fs): the group has dropped this member; rejoining",
                "since it joined" if math.isinf(silent) else f"for {silent:.0f}s",
                self._session_timeout_seconds,
            )
        else:
            return
        self.abandon()
        self._consumer.unsubscribe()
        self._subscribe()

    def step(self, poll_timeout_seconds: float = 0.2) -> None:
        """One poll, then a flush when the batch is due (see _due)."""
        room = max(1, self._max_batch_size - len(self._batch.items))
        timeout = self._poll_timeout(poll_timeout_seconds)
        polled = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=room)
        caught_up = True
        for partition, records in polled.items():
            for record in records:
                self._batch.add(record, self._decode_or_dead_letter(record))
            if records and not self._at_end(partition, records[-1].offset + 1):
                caught_up = False
        self._caught_up = caught_up
        if self._due():
            self.flush()
        self._resume_dropped_join()
        self._check_membership()

    def run(self) -> None:
        """Loops until stop_event is set; the in-flight batch is then dropped, uncommitted."""
        try:
            while not self.stop_event.is_set():
                self.step()
        except StopRequested:
            pass
        finally:
            self.abandon()

    def flush(self) -> None:
        """Writes the batch, then commits the offsets it covers. If either fails, the batch is
        dropped and the positions rewound to it, so nothing later is committed over it."""
        batch = self._batch
        if not batch.offsets:
            return
        try:
            if batch.items:
                self._write(batch.items)
                self._writes += 1
                if self._crash_after_writes and self._writes >= self._crash_after_writes:
                    os.kill(os.getpid(), signal.SIGKILL)
            commits = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in batch.offsets.items()}
            self._consumer.commit(commits)
        except CommitFailedError:
            # The group moved our partitions on (e.g. a write retried past max.poll.interval.ms):
            # the new owner re-reads this batch, and writing it twice is harmless.
            log.warning("commit refused after a rebalance; %d items will be redelivered", len(batch.items))
            self.abandon()
            return
        except BaseException:
            self.abandon()
            raise
        self._batch = Batch()
        self._last_flush_at = time.monotonic()
        log.debug("committed %s after writing %d items", batch.offsets, len(batch.items))

    def abandon(self) -> None:
        """Drops the batch uncommitted and rewinds the partitions we still own to its start, so
        the records are read again (by us or, after a rebalance, by the partitions' new owner)."""
        batch, self._batch = self._batch, Batch()
        if not batch.offsets:
            return
        log.info("dropping %d uncommitted items; they will be read again", len(batch.items))
        owned = self._consumer.assignment()
        for partition, offset in batch.first_offsets.items():
            if partition in owned:
                self._consumer.seek(partition, offset)

    def _decode_or_dead_letter(self, record: ConsumerRecord) -> T | None:
        try:
            return self._decode(record)
        except InvalidEvent as exc:
            log.warning(
                "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc.reason
            )
            self._dead_letters.send(record, exc.reason)
            return None

    def _at_end(self, partition: TopicPartition, next_offset: int) -> bool:
        """Whether `next_offset` is the end of the partition as of the last fetch (its high
        watermark). Unknown counts as not at the end: the batch then waits for size or age."""
        highwater = self._consumer.highwater(partition)
        return highwater is not None and next_offset >= highwater

    def _due_at(self) -> float | None:
        """When the batch must be written (monotonic time), or None while it is empty.

        Behind (a backlog), a batch grows to max_batch_size, or max_batch_seconds at most: few
        large writes, which is what ClickHouse wants. Caught up (the last poll reached the end of
        its partitions), waiting brings nothing more, so the batch is written at once — but at
        most one write per min_write_interval, so a trickle of events still makes few inserts."""
        batch = self._batch
        if not batch.offsets or batch.started_at is None:
            return None
        if len(batch.items) >= self._max_batch_size:
            return batch.started_at
        due_at = batch.started_at + self._max_batch_seconds
        if self._caught_up:
            due_at = min(due_at, self._last_flush_at + self._min_write_interval)
        return due_at

    def _due(self) -> bool:
        due_at = self._due_at()
        return due_at is not None and time.monotonic() >= due_at

    def _poll_timeout(self, longest: float) -> float:
        """A poll may wait for new records, but not past the moment the batch falls due."""
        due_at = self._due_at()
        if due_at is None:
            return longest
        return min(longest, max(0.0, due_at - time.monotonic()))


class _DropOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """When partitions are taken away, the uncommitted batch is dropped rather than written: a
    write could block the rebalance for as long as ClickHouse or Kafka is failing. The new owners
    read it again from the committed offsets; writing it twice is harmless."""

    def __init__(self, owner: BatchingConsumer[Any]) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: object) -> None:
        self._owner.abandon()
        self._owner.assigned(None)

    def on_partitions_assigned(self, assigned: object) -> None:
        self._owner.assigned(time.monotonic())


def stop_on_signals(stop_event: threading.Event) -> None:
    """SIGTERM and SIGINT ask the loop to stop after the current step."""

    def handler(signum: int, frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop_event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
