"""Writes to the outbox. Callers own the transaction: an event is written inside the same
``transaction.atomic`` block as the change it describes, so both commit or neither does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from outbox.models import OutboxEvent

SCHEMA_VERSION = 1


def outbox_event_create(
    *,
    event_type: str,
    aggregate_type: str,
    aggregate_id: str | int,
    aggregate_version: int,
    payload: dict[str, Any],
    occurred_at: datetime | None = None,
) -> OutboxEvent:
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        # Outside a transaction the event could commit without its change (or the reverse).
        raise RuntimeError("outbox_event_create must run inside transaction.atomic()")
    return OutboxEvent.objects.create(
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        aggregate_version=aggregate_version,
        schema_version=SCHEMA_VERSION,
        occurred_at=occurred_at or timezone.now(),
        payload=payload,
    )
