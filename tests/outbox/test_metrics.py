"""/metrics' outbox gauges against the real MariaDB outbox table: the numbers match what plain SQL
says, and a scrape reads a bounded part of the table however large the backlog (MariaDB's ANALYZE
reports the rows each query really read)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from outbox.models import OutboxEvent, OutboxStatus
from tests.outbox.conftest import insert_outbox_events

pytestmark = pytest.mark.django_db


def scrape() -> dict[str, float]:
    response = Client().get("/metrics")
    assert response.status_code == 200
    values = {}
    for line in response.content.decode().splitlines():
        if line.startswith("outbox_") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def backlog(*, pending: int, published: int, parked: int) -> None:
    """Events in id order: published first and last, parked in between, the rest pending, each
    created a second after the one before, so the oldest pending one is known."""
    total = pending + published + parked
    insert_outbox_events(orders=total, versions=1)
    ids = list(OutboxEvent.objects.order_by("id").values_list("id", flat=True))
    start = timezone.now() - timedelta(seconds=total + 3600)
    with connection.cursor() as cursor:
        for offset, pk in enumerate(ids):
            cursor.execute(
                "UPDATE outbox SET created_at = %s WHERE id = %s", [start + timedelta(seconds=offset), pk]
            )
    head = published // 2
    OutboxEvent.objects.filter(id__in=ids[:head] + ids[total - (published - head) :]).update(
        status=OutboxStatus.PUBLISHED, published_at=timezone.now()
    )
    OutboxEvent.objects.filter(id__in=ids[head : head + parked]).update(status=OutboxStatus.FAILED)


def truth() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT SUM(status = 'pending'), SUM(status = 'failed'), MIN(IF(status = 'pending', id, NULL))"
            " FROM outbox"
        )
        pending, parked, oldest_id = cursor.fetchone()
    oldest = OutboxEvent.objects.get(id=oldest_id).created_at if oldest_id else None
    return {"pending": float(pending or 0), "parked": float(parked or 0), "oldest": oldest}


def assert_age_of(oldest: Any, scraped: dict[str, float], before: Any, after: Any) -> None:
    """The age /metrics reported is the oldest pending event's age at some moment of the scrape."""
    age = scraped["outbox_oldest_pending_age_seconds"]
    assert (before - oldest).total_seconds() <= age <= (after - oldest).total_seconds()


def rows_read(sql: str, params: Any) -> list[float]:
    """Rows MariaDB really read per table access when it ran `sql` (ANALYZE executes it; a const
    lookup by primary key reports none)."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE FORMAT=JSON {sql}", params)
        plan = json.loads(cursor.fetchone()[0])
    found: list[float] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "r_rows" and value is not None:
                    found.append(float(value))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(plan)
    return found


def test_gauges_match_the_outbox_table() -> None:
    backlog(pending=120, published=40, parked=7)
    expected = truth()
    before = timezone.now()
    metrics = scrape()
    assert metrics["outbox_pending_events"] == expected["pending"] == 120
    assert metrics["outbox_parked_events"] == expected["parked"] == 7
    # The oldest pending event is the 28th created (20 published and 7 parked before it), over an
    # hour ago; older published and parked events do not count.
    assert_age_of(expected["oldest"], metrics, before, timezone.now())
    assert metrics["outbox_oldest_pending_age_seconds"] > 3600
    first = OutboxEvent.objects.order_by("id").first()
    assert first is not None and first.created_at < expected["oldest"]

    OutboxEvent.objects.filter(status=OutboxStatus.PENDING).update(status=OutboxStatus.PUBLISHED)
    metrics = scrape()
    assert (metrics["outbox_pending_events"], metrics["outbox_oldest_pending_age_seconds"]) == (0, 0)


def test_a_scrape_reads_a_bounded_part_of_a_large_backlog(settings: Any) -> None:
    settings.OUTBOX_METRICS_COUNT_LIMIT = 50
    backlog(pending=600, published=100, parked=80)

    before = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        metrics = scrape()
    after = timezone.now()

    # Above the limit (50) the counts are the optimizer's estimate: never below it, and close to
    # the truth (600 pending, 80 parked).
    assert 300 <= metrics["outbox_pending_events"] <= 1200
    assert 50 <= metrics["outbox_parked_events"] <= 160
    assert_age_of(truth()["oldest"], metrics, before, after)

    selects = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert selects, "the scrape read the outbox table"
    for sql in selects:
        # A MIN over the index is answered without reading any table rows.
        read = max(rows_read(sql, None), default=0)
        assert read <= 50, f"{read} rows read by {sql}"
