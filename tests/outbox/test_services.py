"""Outbox services and the on-commit kick on the real MariaDB and Redis: retention in batches,
the admin retry, one kick per transaction, and writes that succeed when Redis is down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from orders.models import Order
from outbox.envelope import kafka_record_of
from outbox.kick import (
    KICK_LOOP_SECONDS,
    relay_kick,
    relay_kick_finished,
    relay_kick_released,
    relay_kick_started,
)
from outbox.models import OutboxEvent, OutboxStatus
from outbox.redis_state import kick_key, redis_client, redis_client_reset
from outbox.services import outbox_event_create, outbox_event_retry, outbox_published_purge
from tests import services
from tests.outbox.conftest import insert_outbox_events


@pytest.mark.django_db
def test_purge_deletes_only_published_rows_older_than_the_retention_in_batches() -> None:
    insert_outbox_events(orders=5, versions=5)
    now = timezone.now()
    old, recent = list(OutboxEvent.objects.filter(aggregate_id__in=["1", "2", "3"])), ["4"]
    OutboxEvent.objects.filter(pk__in=[e.pk for e in old]).update(
        status=OutboxStatus.PUBLISHED, published_at=now - timedelta(hours=80)
    )
    OutboxEvent.objects.filter(aggregate_id__in=recent).update(
        status=OutboxStatus.PUBLISHED, published_at=now - timedelta(hours=1)
    )
    # Order 5 stays pending however old it is: only published rows may go.
    OutboxEvent.objects.filter(aggregate_id="5").update(created_at=now - timedelta(days=30))

    deleted = outbox_published_purge(older_than=timedelta(hours=72), batch_size=4)

    assert deleted == 15
    assert sorted(set(OutboxEvent.objects.values_list("aggregate_id", flat=True))) == ["4", "5"]


@pytest.mark.django_db
def test_retry_resets_only_parked_events() -> None:
    events = insert_outbox_events(orders=1, versions=2)
    OutboxEvent.objects.filter(pk=events[0].pk).update(
        status=OutboxStatus.FAILED, attempts=10, last_error="boom"
    )
    assert outbox_event_retry(event_ids=[e.pk for e in events]) == 1
    retried = OutboxEvent.objects.get(pk=events[0].pk)
    assert (retried.status, retried.attempts, retried.next_attempt_at) == (OutboxStatus.PENDING, 0, None)
    assert retried.last_error == "boom"  # the history stays readable in the admin


def _write(order_id: int, versions: range) -> None:
    for version in versions:
        outbox_event_create(
            event_type="OrderStatusChanged",
            aggregate_type="order",
            aggregate_id=order_id,
            aggregate_version=version,
            payload={"order_id": order_id, "version": version},
        )


@pytest.mark.django_db
def test_a_transaction_registers_one_kick_however_many_events_it_writes(
    settings: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    settings.OUTBOX_KICK_ON_COMMIT = True
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        _write(1, range(1, 6))
    assert callbacks == [relay_kick]


@pytest.mark.django_db
def test_the_kick_is_off_when_disabled(
    settings: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    settings.OUTBOX_KICK_ON_COMMIT = False
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        _write(1, range(1, 3))
    assert callbacks == []


@pytest.mark.django_db(transaction=True)
def test_writes_commit_quickly_when_redis_is_down(
    settings: Any, make_order: Callable[..., Order], caplog: pytest.LogCaptureFixture
) -> None:
    settings.OUTBOX_KICK_ON_COMMIT = True
    settings.OUTBOX_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    redis_client_reset()
    try:
        started = time.monotonic()
        order = make_order()
        elapsed = time.monotonic() - started
    finally:
        redis_client_reset()
    assert OutboxEvent.objects.filter(aggregate_id=str(order.pk), status=OutboxStatus.PENDING).exists()
    assert "relay kick skipped, Redis unavailable" in caplog.text
    assert elapsed < 2, f"the write waited {elapsed:.1f}s on Redis"


@pytest.fixture
def kick_queue(settings: Any) -> Iterator[Callable[[], int]]:
    """A queue of its own for the kicks' runs; yields how many runs it holds."""
    services.require_redis()
    settings.CELERY_TASK_DEFAULT_QUEUE = "test-kick-debounce"
    client = redis_client()
    client.delete(kick_key())
    try:
        yield lambda: int(client.llen("test-kick-debounce"))
    finally:
        client.delete(kick_key(), "test-kick-debounce", "_kombu.binding.test-kick-debounce")


def test_a_queued_run_debounces_further_kicks(kick_queue: Callable[[], int]) -> None:
    relay_kick()
    relay_kick()
    assert kick_queue() == 1, "the second commit's rows wait for the run already queued"
    assert redis_client().get(kick_key()) == b"queued"


def test_commits_during_a_run_make_it_relay_once_more_instead_of_queuing_runs(
    kick_queue: Callable[[], int],
) -> None:
    relay_kick_started()
    assert not relay_kick_finished(looped_seconds=0), "no commit meanwhile: the run is done"
    assert redis_client().get(kick_key()) is None

    relay_kick_started()
    relay_kick()
    relay_kick()
    assert kick_queue() == 0 and redis_client().get(kick_key()) == b"again"
    assert relay_kick_finished(looped_seconds=1), "commits came in: relay once more"
    assert not relay_kick_finished(looped_seconds=2)
    # Done and the key gone: the next commit queues a run.
    relay_kick()
    assert kick_queue() == 1


def test_a_run_that_looped_long_enough_hands_over_to_a_fresh_one(kick_queue: Callable[[], int]) -> None:
    relay_kick_started()
    relay_kick()
    assert not relay_kick_finished(looped_seconds=KICK_LOOP_SECONDS)
    assert kick_queue() == 1 and redis_client().get(kick_key()) == b"queued"


def test_a_run_stopped_by_an_outage_lets_the_next_commit_queue_a_run(kick_queue: Callable[[], int]) -> None:
    relay_kick_started()
    relay_kick()
    relay_kick_released()
    relay_kick()
    assert kick_queue() == 1


@pytest.mark.django_db
def test_the_event_id_is_stored_as_the_canonical_uuid_text_it_has_on_kafka() -> None:
    """What a change-data-capture relay reads from the table is the envelope's event_id, in a type
    its parser knows (Debezium 2.x fails on MariaDB's native `uuid`)."""
    insert_outbox_events(orders=1, versions=2)
    for event in OutboxEvent.objects.all():
        with connection.cursor() as cursor:
            cursor.execute("SELECT event_id FROM outbox WHERE id = %s", [event.pk])
            (stored,) = cursor.fetchone()
        assert stored == str(event.event_id)
        assert dict(kafka_record_of(event)[2])["event_id"] == stored.encode()
        assert OutboxEvent.objects.get(event_id=event.event_id).pk == event.pk
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DATA_TYPE, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'outbox' AND COLUMN_NAME = 'event_id'"
        )
        assert cursor.fetchone() == ("char", 36)


@pytest.mark.django_db
def test_an_event_below_the_first_version_is_refused() -> None:
    """The relay takes an aggregate's first version as its head without looking (outbox/relay.py),
    so a version 0 would let version 1 overtake it."""
    with transaction.atomic(), pytest.raises(ValueError, match="aggregate_version starts at 1, got 0"):
        outbox_event_create(
            event_type="OrderCreated", aggregate_type="order", aggregate_id=1, aggregate_version=0, payload={}
        )
    assert not OutboxEvent.objects.exists()
