"""Reads of the outbox that other parts of the project need."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Min

from outbox.models import OutboxEvent, OutboxStatus


def outbox_oldest_unpublished_at() -> datetime | None:
    """The occurred_at of the oldest event not published yet, pending or parked (a parked event
    is a change that has not reached Kafka either); None when every event is published. One
    lookup per status in the (status, occurred_at) index."""
    oldest = [
        OutboxEvent.objects.filter(status=status).aggregate(oldest=Min("occurred_at"))["oldest"]
        for status in (OutboxStatus.PENDING, OutboxStatus.FAILED)
    ]
    found = [moment for moment in oldest if moment is not None]
    return min(found) if found else None
