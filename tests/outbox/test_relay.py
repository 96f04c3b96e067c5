"""The relay in this process against the real MariaDB and the shared 3-node Kafka cluster:
envelope and headers, per-order order across batches, a poisoned event parked without holding
back other orders, the admin retry, and the metrics endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from orders.models import Order
from outbox.envelope import envelope_of
from outbox.models import OutboxEvent, OutboxStatus
from outbox.relay import relay_run
from tests.outbox.conftest import (
    duplicates,
    first_occurrence_versions,
    insert_outbox_events,
    metric,
    read_topic,
    scrape_metrics,
)

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def test_orders_relay_with_key_envelope_and_event_id_header(
    make_order: Callable[..., Order], make_topic: Callable[..., str], kafka_bootstrap: list[str]
) -> None:
    topic = make_topic("order-events")
    orders = [make_order() for _ in range(5)]
    published_before = metric(scrape_metrics(), "outbox_published_total")

    result = relay_run(topic=topic)

    assert result.published == 5 and result.failed == 0 and not result.outage
    records = read_topic(topic, bootstrap=kafka_bootstrap, expected=5)
    assert len(records) == 5
    events = {str(e.event_id): e for e in OutboxEvent.objects.all()}
    for record in records:
        event = events[record.event["event_id"]]
        assert record.key == str(event.aggregate_id)
        assert record.headers["event_id"] == str(event.event_id)
        assert record.event == _json_roundtrip(envelope_of(event))
    assert {r.key for r in records} == {str(o.pk) for o in orders}
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {OutboxStatus.PUBLISHED}
    assert not OutboxEvent.objects.exclude(locked_by="").exists()
    metrics = scrape_metrics()
    assert metric(metrics, "outbox_published_total") - published_before == 5
    assert metric(metrics, "outbox_pending_events") == 0


def test_batches_drain_the_backlog_in_version_order(
    make_topic: Callable[..., str], kafka_bootstrap: list[str]
) -> None:
    topic = make_topic("order-events")
    insert_outbox_events(orders=40, versions=10)

    # Small batches: one run goes through many claims, and orders span batch boundaries.
    result = relay_run(topic=topic, batch_size=37, time_budget=60)

    assert result.published == 400 and result.batches >= 11
    records = read_topic(topic, bootstrap=kafka_bootstrap, expected=400)
    assert len(records) == 400 and duplicates(records) == 0
    for order, versions in first_occurrence_versions(records).items():
        assert versions == list(range(1, 11)), f"order {order}: {versions}"


def test_poisoned_event_is_parked_after_its_retries_without_holding_back_other_orders(
    make_topic: Callable[..., str], kafka_bootstrap: list[str], settings: Any
) -> None:
    settings.OUTBOX_MAX_ATTEMPTS = 3
    settings.OUTBOX_RETRY_BASE_SECONDS = 0.2
    topic = make_topic("order-events")
    insert_outbox_events(orders=10, versions=3)
    # Order 1's head event can never be sent: it is larger than the producer's max request size.
    poisoned = OutboxEvent.objects.get(aggregate_id="1", aggregate_version=1)
    poisoned.payload = {"order_id": 1, "version": 1, "blob": "x" * 2_000_000}
    poisoned.save(update_fields=["payload"])

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        relay_run(topic=topic)
        poisoned.refresh_from_db()
        if poisoned.status == OutboxStatus.FAILED:
            break
        time.sleep(0.2)

    assert poisoned.status == OutboxStatus.FAILED
    assert poisoned.attempts == 3
    assert "MSG_SIZE_TOO_LARGE" in poisoned.last_error
    # Order 1's later versions wait behind their parked head; every other order went through.
    held = OutboxEvent.objects.filter(aggregate_id="1", aggregate_version__gt=1)
    assert set(held.values_list("status", flat=True)) == {OutboxStatus.PENDING}
    assert OutboxEvent.objects.exclude(aggregate_id="1").exclude(status=OutboxStatus.PUBLISHED).count() == 0
    records = read_topic(topic, bootstrap=kafka_bootstrap, expected=27)
    assert "1" not in {r.key for r in records}
    assert len(records) == 27
    for order, versions in first_occurrence_versions(records).items():
        assert versions == [1, 2, 3], f"order {order}: {versions}"

    # Parked events show in the metrics and in the admin, whose retry action queues them again.
    metrics = scrape_metrics()
    assert metric(metrics, "outbox_parked_events") == 1
    assert metric(metrics, "outbox_pending_events") == 2
    assert metric(metrics, "outbox_oldest_pending_age_seconds") >= 0
    assert metric(metrics, "outbox_relay_batch_duration_seconds_count") >= 1
    staff = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(staff)
    detail = client.get(f"/admin/outbox/outboxevent/{poisoned.pk}/change/")
    assert detail.status_code == 200 and "MSG_SIZE_TOO_LARGE" in detail.content.decode()
    page = client.get("/admin/outbox/outboxevent/", {"status__exact": "failed"})
    assert page.status_code == 200 and "Failed (parked)" in page.content.decode()
    found = client.get("/admin/outbox/outboxevent/", {"q": str(poisoned.event_id)})
    assert "1 result" in found.content.decode()
    response = client.post(
        "/admin/outbox/outboxevent/",
        {"action": "retry_parked", "_selected_action": [poisoned.pk]},
        follow=True,
    )
    assert response.status_code == 200
    poisoned.refresh_from_db()
    assert (poisoned.status, poisoned.attempts, poisoned.next_attempt_at) == (OutboxStatus.PENDING, 0, None)

    # Fixed at the source, the retried event and its held-back successors go out in order.
    poisoned.payload = {"order_id": 1, "version": 1}
    poisoned.save(update_fields=["payload"])
    assert relay_run(topic=topic).published == 3
    records = read_topic(topic, bootstrap=kafka_bootstrap, expected=30)
    assert first_occurrence_versions(records)["1"] == [1, 2, 3]


def _json_roundtrip(value: dict[str, Any]) -> dict[str, Any]:
    import json

    from django.core.serializers.json import DjangoJSONEncoder

    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))
