"""The seed's relay algorithm, kept only as the benchmark's baseline (never used by the pipeline).

Every tick (5 s) it reads one batch of 100 pending rows in id order, sends each event and waits for
its acknowledgement before sending the next, and marks the whole batch published after the loop.
The same envelope and topic settings as our relay are used, so only the algorithm differs."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

SEED_BATCH = 100
SEED_TICK_SECONDS = 5.0


@dataclass
class SeedRun:
    published: int = 0
    ticks: int = 0
    seconds: float = 0.0


def seed_relay_tick(producer: object, topic: str) -> int:
    from django.utils import timezone

    from outbox.envelope import kafka_record_of
    from outbox.models import OutboxEvent, OutboxStatus

    batch = list(OutboxEvent.objects.filter(status=OutboxStatus.PENDING).order_by("id")[:SEED_BATCH])
    for event in batch:
        key, value, headers = kafka_record_of(event)
        producer.send(topic, key=key, value=value, headers=headers).get(timeout=30)  # type: ignore[attr-defined]
    if batch:
        OutboxEvent.objects.filter(pk__in=[e.pk for e in batch]).update(
            status=OutboxStatus.PUBLISHED, published_at=timezone.now()
        )
    return len(batch)


def seed_relay_run(*, topic: str, ticks: int, stop: threading.Event | None = None) -> SeedRun:
    """Runs `ticks` ticks on the seed's fixed schedule (the first at once)."""
    from django.conf import settings
    from django.db import connection
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, acks="all")
    run = SeedRun()
    started = time.monotonic()
    try:
        for tick in range(ticks):
            next_tick = started + tick * SEED_TICK_SECONDS
            while time.monotonic() < next_tick:
                if stop is not None and stop.is_set():
                    return run
                time.sleep(0.05)
            run.published += seed_relay_tick(producer, topic)
            run.ticks += 1
        # The last tick's interval counts too: the seed would not tick again before it ends.
        end = started + ticks * SEED_TICK_SECONDS
        while time.monotonic() < end:
            time.sleep(0.05)
    finally:
        run.seconds = time.monotonic() - started
        producer.close(timeout=5)
        connection.close()
    return run
