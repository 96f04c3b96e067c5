"""The consumer loop shared by every role, Arroyo-style: poll → decode (invalid → dead-letter
queue) → batch by size and time → write (rows the target refuses as bad data → dead-letter queue)
→ commit the exact offsets the write covered. A runaway limit stops the loop when too many records
are dead-lettered (consumers/dead_letters.py).

A batch is committed only after its write returned; anything that stops the loop before that
(a crash, a signal, a rebalance that cannot flush) leaves the batch uncommitted, so Kafka
redelivers it. Writes are idempotent by design (ReplacingMergeTree versions), so redelivery is
harmless."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata

from consumers.dead_letters import DeadLetterLimit
from consumers.kafka_compat import GroupMembership
from consumers.kafka_io import DeadLetterQueue
from consumers.metrics import DeadLetterKind
from contract.events import InvalidEvent

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a write may hand back: the items (by index in the batch) the target refused as bad data,
# with the reason. They go to the dead-letter topic; the rest of the batch was written.
Rejection = tuple[int, str]
Write = Callable[[Sequence[T]], Sequence[Rejection] | None]

# Fault injection for crash tests: the process kills itself with SIGKILL after this many writes,
# after the write and before the commit, the worst moment for at-least-once delivery.
CRASH_AFTER_WRITES_ENV = "CONSUMER_CRASH_AFTER_WRITES"


class StopRequested(Exception):
    """Raised inside a write (e.g. a retry loop) when shutdown was requested: the batch is abandoned."""


@dataclass
class Batch(Generic[T]):
    items: list[T] = field(default_factory=list)
    # The record each item was decoded from, for dead-lettering what the write refuses.
    records: list[ConsumerRecord] = field(default_factory=list)
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
            self.records.append(record)
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
        write: Write[T],
        dead_letters: DeadLetterQueue,
        max_batch_size: int,
        max_batch_seconds: float,
        min_write_interval: float = 0.0,
        stop_event: threading.Event | None = None,
        dead_letter_limit: DeadLetterLimit | None = None,
    ) -> None:
        self._consumer = consumer
        self._decode = decode
        self._write = write
        self._dead_letters = dead_letters
        self._dead_letter_limit = dead_letter_limit or DeadLetterLimit()
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
        # When partitions are taken away, the uncommitted batch is dropped rather than written: a
        # write could block the rebalance for as long as ClickHouse or Kafka is failing. The new
        # owners read it again from the committed offsets; writing it twice is harmless.
        self._membership = GroupMembership(consumer, topic, on_revoked=self.abandon)

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
        self._membership.after_poll()

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
                rejected = self._write(batch.items) or ()
                self._writes += 1
                if self._crash_after_writes and self._writes >= self._crash_after_writes:
                    os.kill(os.getpid(), signal.SIGKILL)
                for index, reason in rejected:
                    self._dead_letter(batch.records[index], reason, DeadLetterKind.REFUSED_BY_TARGET)
            commits = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in batch.offsets.items()}
            self._consumer.commit(commits)
        except (CommitFailedError, RebalanceInProgressError):
            # The group moved our partitions on (e.g. a write retried past max.poll.interval.ms),
            # or is moving them while kafka-python rejoins: the owner after the rebalance re-reads
            # this batch, and writing it twice is harmless.
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
            item = self._decode(record)
        except InvalidEvent as exc:
            self._dead_letter(record, exc.reason, DeadLetterKind.INVALID_EVENT)
            return None
        except Exception as exc:
            # A fault of ours on one record (a bug, a value nobody foresaw) must not stop the
            # partition, nor crash the process into reading the same record on every restart.
            log.exception(
                "unexpected error decoding %s[%d]@%d", record.topic, record.partition, record.offset
            )
            self._dead_letter(
                record, f"unexpected {type(exc).__name__}: {exc}", DeadLetterKind.UNEXPECTED_ERROR
            )
            return None
        self._dead_letter_limit.record(dead=False)
        return item

    def _dead_letter(self, record: ConsumerRecord, reason: str, kind: DeadLetterKind) -> None:
        log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        self._dead_letters.send(record, reason, kind)
        self._dead_letter_limit.record(dead=True, reason=reason)

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


def stop_on_signals(stop_event: threading.Event) -> None:
    """SIGTERM and SIGINT ask the loop to stop after the current step."""

    def handler(signum: int, frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop_event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
