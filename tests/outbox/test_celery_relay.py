"""The relay as it runs in production: real Celery worker and beat processes against the real
MariaDB test database, Redis and the shared 3-node Kafka cluster (a unique topic and a unique
Celery queue per test)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from orders.models import Order
from outbox.models import OutboxEvent, OutboxStatus
from outbox.relay import FAULT_EXIT_STATUS
from tests.outbox.conftest import (
    Processes,
    duplicates,
    first_occurrence_versions,
    insert_outbox_events,
    read_topic,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BEAT_INTERVAL = 5.0


def _published() -> int:
    return OutboxEvent.objects.filter(status=OutboxStatus.PUBLISHED).count()


def test_beat_relays_new_orders_within_one_interval(
    processes: Processes,
    make_order: Callable[..., Order],
    make_topic: Callable[..., str],
    kafka_bootstrap: list[str],
) -> None:
    topic = make_topic("order-events")
    processes.worker(ORDER_EVENTS_TOPIC=topic, OUTBOX_RELAY_INTERVAL=BEAT_INTERVAL)
    processes.beat(ORDER_EVENTS_TOPIC=topic, OUTBOX_RELAY_INTERVAL=BEAT_INTERVAL)
    processes.wait_for_log("worker", "ready.")
    processes.wait_for_log("beat", "beat: Starting")

    # No kick from this process (test settings): only beat's tick relays these.
    orders = [make_order() for _ in range(25)]
    created = time.monotonic()
    records = read_topic(topic, bootstrap=kafka_bootstrap, expected=25, timeout=BEAT_INTERVAL + 10)
    elapsed = time.monotonic() - created

    assert len(records) == 25, f"{len(records)} records after {elapsed:.1f}s"
    assert elapsed <= BEAT_INTERVAL + 5, f"took {elapsed:.1f}s"
    by_id = {str(e.event_id): e for e in OutboxEvent.objects.all()}
    assert {r.event["event_id"] for r in records} == set(by_id)
    assert {r.key for r in records} == {str(o.pk) for o in orders}
    for record in records:
        event = by_id[record.event["event_id"]]
        assert record.headers["event_id"] == str(event.event_id)
        assert record.key == event.aggregate_id == str(record.event["payload"]["order_id"])
        assert record.event["event_type"] == "OrderCreated"
        assert record.event["aggregate_version"] == record.event["payload"]["version"] == 1
        assert record.event["payload"] == event.payload
    assert wait_until(lambda: _published() == 25, timeout=5)


def test_commit_kicks_the_relay_without_waiting_for_beat(
    processes: Processes,
    make_order: Callable[..., Order],
    make_topic: Callable[..., str],
    kafka_bootstrap: list[str],
    settings: Any,
) -> None:
    topic = make_topic("order-events")
    # No beat at all: only the on-commit kick can start a relay run.
    processes.worker(ORDER_EVENTS_TOPIC=topic)
    processes.wait_for_log("worker", "ready.")
    settings.OUTBOX_KICK_ON_COMMIT = True
    settings.CELERY_TASK_DEFAULT_QUEUE = processes.base_env["CELERY_TASK_DEFAULT_QUEUE"]

    for burst in range(3):
        started = time.monotonic()
        [make_order() for _ in range(10)]
        records = read_topic(topic, bootstrap=kafka_bootstrap, expected=10 * (burst + 1), timeout=10)
        assert len({r.event["event_id"] for r in records}) == 10 * (burst + 1)
        assert time.monotonic() - started < 5, "the kick did not deliver before a beat tick would have"

    # 30 commits were debounced into far fewer relay runs.
    runs = processes.log("worker").count("outbox.tasks.relay_outbox") // 2
    assert 1 <= runs < 30, runs


def test_relay_killed_between_publish_and_mark_loses_nothing(
    processes: Processes, make_topic: Callable[..., str], kafka_bootstrap: list[str]
) -> None:
    topic = make_topic("order-events")
    insert_outbox_events(orders=20, versions=5)

    # The fault hook makes the process exit like kill -9 once Kafka acknowledged its first batch,
    # before the marking transaction.
    crashed = processes.relay_command(
        "--once", "--batch-size", "30", ORDER_EVENTS_TOPIC=topic,
        OUTBOX_FAULT_EXIT_AFTER_PRODUCE=1, OUTBOX_LEASE_SECONDS=3,
    )  # fmt: skip
    assert crashed.returncode == FAULT_EXIT_STATUS, crashed.stdout + crashed.stderr
    assert _published() == 0
    leased = OutboxEvent.objects.exclude(locked_by="").count()
    assert 0 < leased <= 30
    in_kafka = read_topic(topic, bootstrap=kafka_bootstrap, expected=leased, timeout=10)
    assert len(in_kafka) == leased, "the crashed relay's batch was acknowledged by Kafka"

    # Restart: beat and a worker take over once the dead relay's lease ran out.
    processes.worker(ORDER_EVENTS_TOPIC=topic, OUTBOX_RELAY_INTERVAL=1, OUTBOX_LEASE_SECONDS=3)
    processes.beat(ORDER_EVENTS_TOPIC=topic, OUTBOX_RELAY_INTERVAL=1)
    assert wait_until(lambda: _published() == 100, timeout=40), f"{_published()} of 100 published"

    records = read_topic(topic, bootstrap=kafka_bootstrap, expected=100 + leased, timeout=15)
    assert {r.event["event_id"] for r in records} == {
        str(e) for e in OutboxEvent.objects.values_list("event_id", flat=True)
    }
    dupes = duplicates(records)
    print(f"crash between publish and mark: {leased} events were in flight, {dupes} duplicates in Kafka")
    assert dupes == leased, "exactly the crashed batch is published twice"
    for order, versions in first_occurrence_versions(records).items():
        assert versions == [1, 2, 3, 4, 5], f"order {order}: {versions}"


def test_relay_killed_with_sigkill_mid_backlog_loses_nothing(
    processes: Processes, make_topic: Callable[..., str], kafka_bootstrap: list[str]
) -> None:
    topic = make_topic("order-events")
    insert_outbox_events(orders=100, versions=30)
    relay = [sys.executable, "manage.py", "outbox_relay", "--batch-size", "25"]
    env = {"ORDER_EVENTS_TOPIC": topic, "OUTBOX_LEASE_SECONDS": 3}

    victim = processes.start("relay-1", relay, **env)
    assert wait_until(lambda: _published() >= 200, timeout=30), "the relay never got going"
    os.kill(victim.pid, signal.SIGKILL)  # wherever it is: claiming, publishing or marking
    victim.wait(timeout=10)
    killed_at = _published()
    assert killed_at < 3000, "the backlog was drained before the kill"

    processes.start("relay-2", relay, **env)
    assert wait_until(lambda: _published() == 3000, timeout=60), f"{_published()} of 3000 published"
    records = read_topic(topic, bootstrap=kafka_bootstrap, expected=3000, timeout=30)
    expected = {str(e) for e in OutboxEvent.objects.values_list("event_id", flat=True)}
    assert {r.event["event_id"] for r in records} == expected, "events lost"
    for order, versions in first_occurrence_versions(records).items():
        assert versions == list(range(1, 31)), f"order {order}: {versions}"
    print(f"kill -9 after {killed_at} of 3000 marked: nothing lost, {duplicates(records)} duplicates")


def test_concurrent_workers_keep_every_order_in_version_order(
    processes: Processes, make_topic: Callable[..., str], kafka_bootstrap: list[str]
) -> None:
    topic = make_topic("order-events")
    insert_outbox_events(orders=500, versions=20)
    expected_ids = {str(e) for e in OutboxEvent.objects.values_list("event_id", flat=True)}
    assert len(expected_ids) == 10_000

    relay_env = {
        "ORDER_EVENTS_TOPIC": topic,
        "OUTBOX_RELAY_INTERVAL": 0.5,
        "OUTBOX_RELAY_BATCH_SIZE": 200,
        "OUTBOX_RELAY_TIME_BUDGET": 2,
    }
    for name in ("worker-a", "worker-b", "worker-c"):
        processes.worker(name, **relay_env)
    processes.beat(**relay_env)
    started = time.monotonic()
    assert wait_until(lambda: _published() == 10_000, timeout=180, interval=1), (
        f"{_published()} of 10000 published"
    )
    drained = time.monotonic() - started

    records = read_topic(topic, bootstrap=kafka_bootstrap, expected=10_000, timeout=60)
    assert {r.event["event_id"] for r in records} == expected_ids, "events lost"
    versions = first_occurrence_versions(records)
    assert len(versions) == 500
    for order, seen in versions.items():
        assert seen == list(range(1, 21)), f"order {order} out of order: {seen}"
    busy = [name for name in ("worker-a", "worker-b", "worker-c") if " published, " in processes.log(name)]
    print(
        f"10000 events of 500 orders drained in {drained:.1f}s by {len(busy)} workers; "
        f"{duplicates(records)} duplicates"
    )
    assert len(busy) >= 2, "the relay runs were not spread over several workers"
