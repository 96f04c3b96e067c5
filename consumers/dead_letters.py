"""Dead letters: the runaway limit, and the tools to inspect and replay a dead-letter topic.

The limit follows Arroyo's DLQ policy: a consumer that dead-letters more than a share of its recent
records, or many in a row, stops with a clear message instead of draining a whole topic into the
dead-letter topic after a bad deploy. What it has not committed is read again once the cause is
fixed and the consumer restarted.

`python -m consumers dlq list|replay` (README, "Dead letters") reads a dead-letter topic, counts
its records by reason and source partition, and sends selected records back to their source topic
once the cause is fixed."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord


class DeadLetterRunaway(RuntimeError):
    """Too many records were dead-lettered: the consumer stops rather than dead-letter the rest."""


@dataclass
class DeadLetterLimit:
    max_consecutive: int = 100
    max_share: float = 0.5
    # The share is judged over this many recent records, once that many were seen.
    window: int = 1000
    _recent: deque[bool] = field(init=False)
    _dead_in_window: int = field(default=0, init=False)
    _consecutive: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._recent = deque(maxlen=self.window)

    def record(self, *, dead: bool, reason: str = "") -> None:
        """Counts one record's outcome; raises DeadLetterRunaway past either limit."""
        if len(self._recent) == self.window:
            self._dead_in_window -= self._recent[0]
        self._recent.append(dead)
        self._dead_in_window += dead
        self._consecutive = self._consecutive + 1 if dead else 0
        if self._consecutive > self.max_consecutive:
            raise DeadLetterRunaway(
                f"{self._consecutive} records in a row were dead-lettered (limit"
                f" CONSUMER_DLQ_MAX_CONSECUTIVE={self.max_consecutive}); the last: {reason}"
            )
        if len(self._recent) == self.window and self._dead_in_window > self.max_share * self.window:
            raise DeadLetterRunaway(
                f"{self._dead_in_window} of the last {self.window} records were dead-lettered (limit"
                f" CONSUMER_DLQ_MAX_SHARE={self.max_share}); the last: {reason}"
            )


# --- inspecting and replaying the dead-letter topic ---------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic, with where it came from and why it was set aside."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    original_headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, record: ConsumerRecord) -> DeadLetter:
        headers = {name: bytes(value or b"") for name, value in record.headers or []}
        return cls(
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            reason=headers.get("reason", b"").decode(errors="replace"),
            source_topic=headers.get("source_topic", b"").decode(),
            source_partition=int(headers.get("source_partition", b"-1")),
            source_offset=int(headers.get("source_offset", b"-1")),
            original_headers=[
                (name.removeprefix("original_"), value)
                for name, value in headers.items()
                if name.startswith("original_")
            ],
        )


def read_dead_letters(consumer: KafkaConsumer, topic: str, timeout: float = 30.0) -> list[DeadLetter]:
    """Every record of the dead-letter topic, partition by partition in offset order (the order
    in which its source records were set aside: one order's records share a key, so a partition)."""
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    if not partitions:
        raise ValueError(f"no topic named {topic!r}")
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    letters: list[DeadLetter] = []
    deadline = time.monotonic() + timeout
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {topic} to its end within {timeout:.0f}s")
        for records in consumer.poll(timeout_ms=500).values():
            letters.extend(DeadLetter.of(record) for record in records)
    return sorted(letters, key=lambda letter: (letter.partition, letter.offset))


def summary(letters: list[DeadLetter]) -> list[tuple[str, int, int]]:
    """(reason, source partition, count), the most frequent first. A reason's first 120 characters
    stand for it: msgspec's messages end with the field's path, which is what tells causes apart."""
    counts = Counter((letter.reason[:120], letter.source_partition) for letter in letters)
    return [(reason, partition, count) for (reason, partition), count in counts.most_common()]


def select(
    letters: list[DeadLetter], *, reason: str | None = None, source_partition: int | None = None
) -> list[DeadLetter]:
    return [
        letter
        for letter in letters
        if (reason is None or reason in letter.reason)
        and (source_partition is None or letter.source_partition == source_partition)
    ]


def replay(producer: KafkaProducer, letters: list[DeadLetter], timeout: float = 30.0) -> int:
    """Sends the records back to their source topics with their original key, value and headers,
    one at a time in dead-letter order and each acknowledged before the next: the records of one
    order go back in the order they were set aside, and so in version order."""
    for letter in letters:
        if not letter.source_topic:
            raise ValueError(f"dead letter {letter.partition}@{letter.offset} names no source topic")
        future = producer.send(
            letter.source_topic, key=letter.key, value=letter.value, headers=letter.original_headers
        )
        future.get(timeout=timeout)
    return len(letters)
