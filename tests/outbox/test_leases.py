"""Relays that lose their lease: a relay whose lease ran out while it published never sends a row
another relay has taken since, and never marks a row as it last read it when another relay has
claimed it meanwhile. Against the real MariaDB and the shared Kafka cluster."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from outbox.models import OutboxEvent, OutboxStatus
from outbox.relay import Lease, _Publication, claim_batch, mark_results, publish_runs, relay_run
from tests.outbox.conftest import insert_outbox_events, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def _expire_every_lease() -> None:
    """What the passing of OUTBOX_LEASE_SECONDS does to a slow relay's rows."""
    OutboxEvent.objects.update(locked_until=timezone.now() - timedelta(seconds=1))


def _append_versions(orders: int, first: int, last: int) -> None:
    OutboxEvent.objects.bulk_create(
        OutboxEvent(
            event_type="OrderStatusChanged",
            aggregate_type="order",
            aggregate_id=str(order),
            aggregate_version=version,
            occurred_at=timezone.now(),
            payload={"order_id": order, "version": version},
        )
        for order in range(1, orders + 1)
        for version in range(first, last + 1)
    )


def test_a_relay_whose_lease_ran_out_sends_nothing_another_relay_took_since(
    make_topic: Callable[..., str], kafka_bootstrap: list[str]
) -> None:
    topic = make_topic("order-events")
    insert_outbox_events(orders=3, versions=3)
    # Relay A claims every row, then stalls (a publish round can wait 35 s) past its lease.
    stalled_runs = claim_batch(relay_id="A", batch_size=100)
    lease = Lease("A", expires_at=time.monotonic())
    _expire_every_lease()
    # Relay B takes the rows over and publishes them, and then the orders' next versions.
    assert relay_run(topic=topic).published == 9
    _append_versions(orders=3, first=4, last=5)
    assert relay_run(topic=topic).published == 6

    publication = publish_runs(stalled_runs, topic=topic, lease=lease)

    assert publication.published == [] and publication.failures == {}
    records = read_topic(topic, bootstrap=kafka_bootstrap, expected=15)
    versions: dict[str, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        versions.setdefault(record.key, []).append(record.event["aggregate_version"])
    # On the topic, as on the compacted analytics topic after it, each order's last record is its
    # latest version: a late v1..v3 from A would have made v3 the last one.
    assert versions == {str(order): [1, 2, 3, 4, 5] for order in (1, 2, 3)}


def test_a_relay_keeps_publishing_where_it_still_holds_the_lease(
    make_topic: Callable[..., str], kafka_bootstrap: list[str]
) -> None:
    topic = make_topic("order-events")
    insert_outbox_events(orders=2, versions=2)
    runs = claim_batch(relay_id="A", batch_size=100)

    # Due for renewal at once: renewed, because nobody took the rows.
    publication = publish_runs(runs, topic=topic, lease=Lease("A", expires_at=time.monotonic()))

    assert len(publication.published) == 4
    assert len(read_topic(topic, bootstrap=kafka_bootstrap, expected=4)) == 4


def _run_before_the_first_update(action: Callable[[], None]) -> Callable[..., Any]:
    """A database hook: runs `action` in another thread (its own connection, its own transaction)
    right before this connection's first UPDATE of the outbox, the window between a relay's read
    of its rows and its write."""
    fired: list[bool] = []

    def in_a_thread() -> None:
        try:
            action()
        finally:
            connection.close()  # the thread's own connection

    def hook(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if not fired and sql.lstrip().upper().startswith("UPDATE") and "outbox" in sql:
            fired.append(True)
            thread = threading.Thread(target=in_a_thread)
            thread.start()
            thread.join(timeout=30)
        return execute(sql, params, many, context)

    return hook


def test_marking_a_failure_leaves_a_row_another_relay_claimed_in_between_alone() -> None:
    insert_outbox_events(orders=1, versions=1)
    [[event]] = claim_batch(relay_id="A", batch_size=10)
    _expire_every_lease()

    def relay_b_claims() -> None:
        assert [[e.pk for e in run] for run in claim_batch(relay_id="B", batch_size=10)] == [[event.pk]]

    failure = _Publication(failures={event.pk: "TimeoutError: no ack in time"})
    with connection.execute_wrapper(_run_before_the_first_update(relay_b_claims)):
        mark_results(failure, relay_id="A")

    row = OutboxEvent.objects.get(pk=event.pk)
    assert (row.locked_by, row.status, row.attempts, row.last_error) == ("B", OutboxStatus.PENDING, 0, "")
