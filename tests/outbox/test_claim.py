"""The claim protocol on the real MariaDB: what a relay may take while another relay holds part
of an order, and the pure rules behind it (contiguous runs, backoff)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from outbox import relay
from outbox.models import OutboxEvent, OutboxStatus
from outbox.relay import claim_batch, contiguous_runs, retry_delay
from tests.outbox.conftest import insert_outbox_events


def _claimed(runs: list[list[OutboxEvent]]) -> dict[str, list[int]]:
    return {run[0].aggregate_id: [e.aggregate_version for e in run] for run in runs}


def _event(aggregate_id: str, version: int) -> OutboxEvent:
    return OutboxEvent(aggregate_type="order", aggregate_id=aggregate_id, aggregate_version=version)


def test_contiguous_runs_stop_at_the_first_gap_and_need_the_head() -> None:
    candidates = [_event("a", 1), _event("a", 2), _event("a", 4), _event("b", 3), _event("c", 2)]
    heads = {("order", "a"): 1, ("order", "b"): 3, ("order", "c"): 1}
    runs = contiguous_runs(candidates, heads)
    # a: v3 is missing (another relay has it), so v4 waits; c: its head v1 is not here.
    assert _claimed(runs) == {"a": [1, 2], "b": [3]}


def test_retry_delay_grows_exponentially_up_to_the_cap(settings: Any) -> None:
    settings.OUTBOX_RETRY_BASE_SECONDS = 1.0
    settings.OUTBOX_RETRY_MAX_SECONDS = 60.0
    assert [retry_delay(n) for n in (1, 2, 3, 4, 7, 30)] == [1.0, 2.0, 4.0, 8.0, 60.0, 60.0]


@pytest.mark.django_db
def test_a_relay_never_takes_a_later_version_while_another_holds_the_earlier_one() -> None:
    insert_outbox_events(orders=1, versions=3)
    # Relay A claims only v1 (its batch is full), so it holds the lease on v1.
    assert _claimed(claim_batch(relay_id="A", batch_size=1)) == {"1": [1]}
    # Relay B sees v2 and v3 pending and unleased, but v1 is not published yet.
    assert claim_batch(relay_id="B", batch_size=10) == []

    OutboxEvent.objects.filter(aggregate_version=1).update(
        status=OutboxStatus.PUBLISHED, locked_by="", locked_until=None
    )
    assert _claimed(claim_batch(relay_id="B", batch_size=10)) == {"1": [2, 3]}


@pytest.mark.django_db
def test_an_expired_lease_is_claimed_again() -> None:
    insert_outbox_events(orders=2, versions=2)
    assert _claimed(claim_batch(relay_id="A", batch_size=10)) == {"1": [1, 2], "2": [1, 2]}
    assert claim_batch(relay_id="B", batch_size=10) == []
    # Relay A died: its lease runs out and B takes over every row, in order.
    OutboxEvent.objects.update(locked_until=timezone.now() - timedelta(seconds=1))
    assert _claimed(claim_batch(relay_id="B", batch_size=10)) == {"1": [1, 2], "2": [1, 2]}
    assert set(OutboxEvent.objects.values_list("locked_by", flat=True)) == {"B"}


@pytest.mark.django_db
def test_a_parked_or_backing_off_head_holds_back_only_its_own_order() -> None:
    insert_outbox_events(orders=3, versions=3)
    OutboxEvent.objects.filter(aggregate_id="1", aggregate_version=1).update(status=OutboxStatus.FAILED)
    OutboxEvent.objects.filter(aggregate_id="2", aggregate_version=2).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5), attempts=1
    )
    OutboxEvent.objects.filter(aggregate_id="2", aggregate_version=1).update(status=OutboxStatus.PUBLISHED)
    assert _claimed(claim_batch(relay_id="A", batch_size=100)) == {"3": [1, 2, 3]}


@pytest.mark.django_db
def test_blocked_orders_do_not_fill_the_batch() -> None:
    # 50 events of a parked order come first in id order; a batch of 10 still finds order 2.
    insert_outbox_events(orders=1, versions=50)
    insert_outbox_events(orders=1, versions=2, first_order=2)
    OutboxEvent.objects.filter(aggregate_id="1", aggregate_version=1).update(status=OutboxStatus.FAILED)
    assert _claimed(claim_batch(relay_id="A", batch_size=10)) == {"2": [1, 2]}


@pytest.mark.django_db(transaction=True)
def test_rows_locked_by_a_concurrent_claim_are_skipped_with_the_rest_of_their_order() -> None:
    insert_outbox_events(orders=2, versions=2)
    v1 = OutboxEvent.objects.get(aggregate_id="1", aggregate_version=1)
    locked, release = threading.Event(), threading.Event()

    def concurrent_claim() -> None:
        # Another relay's claim transaction is open and holds the row lock on order 1's v1.
        try:
            with transaction.atomic():
                list(OutboxEvent.objects.select_for_update().filter(pk=v1.pk))
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=concurrent_claim)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        # SKIP LOCKED passes over v1; v2 must not go out ahead of it. Order 2 is unaffected.
        assert _claimed(claim_batch(relay_id="B", batch_size=10)) == {"2": [1, 2]}
    finally:
        release.set()
        holder.join(timeout=10)
    assert _claimed(claim_batch(relay_id="B", batch_size=10)) == {"1": [1, 2]}


def _analyzes(queries: CaptureQueriesContext) -> int:
    return sum(1 for query in queries.captured_queries if query["sql"].startswith("ANALYZE TABLE"))


@pytest.mark.django_db(transaction=True)
def test_a_slow_claim_refreshes_the_table_statistics_once_per_interval(settings: Any) -> None:
    # Statistics sampled mid-burst can make the claim's NOT EXISTS scan every pending row per
    # candidate; a slow claim makes the relay resample them. Every claim counts as slow here.
    statistics = relay.StatisticsRefresher()
    insert_outbox_events(orders=3, versions=1)
    settings.OUTBOX_SLOW_CLAIM_SECONDS = 1.0
    with CaptureQueriesContext(connection) as queries:
        assert len(claim_batch(relay_id="A", batch_size=1, statistics=statistics)) == 1
    assert _analyzes(queries) == 0, "a fast claim left the statistics alone"

    settings.OUTBOX_SLOW_CLAIM_SECONDS = 0.0
    with CaptureQueriesContext(connection) as queries:
        assert len(claim_batch(relay_id="A", batch_size=1, statistics=statistics)) == 1
        assert len(claim_batch(relay_id="A", batch_size=1, statistics=statistics)) == 1
    assert _analyzes(queries) == 1, "refreshed once, then not again within the interval"

    statistics = relay.StatisticsRefresher()
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        # ANALYZE TABLE would commit the caller's transaction: never inside one.
        assert claim_batch(relay_id="B", batch_size=10, statistics=statistics) == []
    assert _analyzes(queries) == 0


def _rows_read() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Handler_read%%'")
        return sum(int(value) for _name, value in cursor.fetchall())


# ANALYZE TABLE commits: the rows are removed by flushing the tables afterwards.
@pytest.mark.django_db(transaction=True)
def test_a_claim_reads_the_pending_rows_not_the_published_ones_before_them() -> None:
    # Ordered by id with a LIMIT, the optimizer may walk the primary key from the table's first
    # row: a claim then reads every published row, and a backlog drain slows down as it goes.
    # Seen from a few hundred thousand rows on: 300,000 published, then 10,000 pending.
    with connection.cursor() as cursor:
        for status, first, count in (
            (OutboxStatus.PUBLISHED, 0, 300_000),
            (OutboxStatus.PENDING, 300_000, 10_000),
        ):
            cursor.execute(
                f"""INSERT INTO outbox (event_id, event_type, aggregate_type, aggregate_id,
                        aggregate_version, schema_version, occurred_at, payload, status, attempts,
                        last_error, locked_by, created_at)
                    SELECT UUID(), 'OrderCreated', 'order', CAST(%s + seq AS CHAR), 1, 1, UTC_TIMESTAMP(6),
                        '{{}}', %s, 0, '', '', UTC_TIMESTAMP(6)
                    FROM seq_1_to_{count}""",
                [first, status.value],
            )
        cursor.execute("ANALYZE TABLE outbox")
        cursor.fetchall()
    first_pending = OutboxEvent.objects.filter(status=OutboxStatus.PENDING).order_by("id")[0].pk

    before = _rows_read()
    runs = claim_batch(relay_id="A", batch_size=1000)
    read = _rows_read() - before

    assert len(runs) == 1000 and min(run[0].pk for run in runs) == first_pending
    assert read < 10_000, f"a claim of 1,000 read {read} rows"
