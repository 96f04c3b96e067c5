"""Kafka clients configured the way every consumer role needs them: no auto-commit, an idempotent
acks=all producer, and a dead-letter queue that records why and where a message came from."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from consumers.metrics import DeadLetterCounter, DeadLetterKind

log = logging.getLogger(__name__)

R = TypeVar("R")

SEND_TIMEOUT_SECONDS = 30.0
# Room for a whole consumer batch of rows per partition in one producer batch: with kafka-python's
# 16 KB default every ~30 rows close a batch, wake the sender thread and make a request of their
# own, which cost the transformer more CPU than its own work.
PRODUCER_BATCH_BYTES = 512 * 1024


def retrying(
    what: str,
    call: Callable[[], R],
    *,
    timeout: float = 30.0,
    initial_delay: float = 0.2,
    max_delay: float = 2.0,
    on_retry: Callable[[Exception], None] | None = None,
) -> R:
    """`call()`, retried while it raises one of Kafka's retriable errors (a group coordinator that
    moved, a partition leader being elected, a request that timed out), with a capped backoff for
    up to `timeout` seconds; each wait is logged with what it waited for. Coordinator moves are
    routine in a 3-node cluster, and a check or probe must not fail on one. `on_retry` runs before
    each retry (e.g. to forget a stale coordinator). Any other error, or a retriable one past the
    timeout, is raised."""
    deadline = time.monotonic() + timeout
    delay = initial_delay
    while True:
        try:
            return call()
        except Exception as exc:
            if not getattr(exc, "retriable", False) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s, retrying in %.1fs", what, type(exc).__name__, delay)
            if on_retry is not None:
                on_retry(exc)
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


def make_consumer(
    *, bootstrap_servers: list[str], group_id: str, client_id: str, session_timeout_ms: int
) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        # Offsets are committed explicitly, only after the write that covers them succeeded.
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(1000, session_timeout_ms // 10),
    )


def make_producer(*, bootstrap_servers: list[str], client_id: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=PRODUCER_BATCH_BYTES,
        retries=2**31 - 1,
        delivery_timeout_ms=120_000,
    )


class DeadLetterQueue:
    """Sends an invalid message to `<topic>.dlq` with the reason and its source position in headers,
    and waits for the broker's ack, so the partition can move on without losing it. Counted by kind
    of reason for /metrics when a counter is given."""

    def __init__(self, producer: KafkaProducer, topic: str, counter: DeadLetterCounter | None = None) -> None:
        self._producer = producer
        self.topic = topic
        self._counter = counter

    def send(self, record: ConsumerRecord, reason: str, kind: DeadLetterKind) -> None:
        headers: list[tuple[str, bytes]] = [
            ("reason", reason.encode()[:2000]),
            ("reason_kind", kind.value.encode()),
            ("source_topic", str(record.topic).encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
        ]
        original: Any = record.headers or []
        headers.extend((f"original_{name}", bytes(value or b"")) for name, value in original)
        future = self._producer.send(self.topic, key=record.key, value=record.value, headers=headers)
        future.get(timeout=SEND_TIMEOUT_SECONDS)
        if self._counter is not None:
            self._counter.count(self.topic, kind)
