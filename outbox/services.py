"""Writes to the outbox. Callers own the transaction: an event is written inside the same
``transaction.atomic`` block as the change it describes, so both commit or neither does."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from contract.types import SCHEMA_VERSION
from outbox.kick import relay_kick_on_commit
from outbox.models import FIRST_VERSION, OutboxEvent, OutboxStatus


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
    if aggregate_version < FIRST_VERSION:
        # The relay orders an aggregate's events from its first version on (outbox/relay.py).
        raise ValueError(f"aggregate_version starts at {FIRST_VERSION}, got {aggregate_version}")
    event = OutboxEvent.objects.create(
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        aggregate_version=aggregate_version,
        schema_version=SCHEMA_VERSION,
        occurred_at=occurred_at or timezone.now(),
        payload=payload,
    )
    relay_kick_on_commit()
    return event


def outbox_event_retry(*, event_ids: Iterable[int]) -> int:
    """Puts parked events back in the queue with fresh attempts; returns how many were parked."""
    return OutboxEvent.objects.filter(pk__in=list(event_ids), status=OutboxStatus.FAILED).update(
        status=OutboxStatus.PENDING, attempts=0, next_attempt_at=None, locked_by="", locked_until=None
    )


def outbox_published_purge(
    *, older_than: timedelta, batch_size: int = 1000, time_budget: float = 30.0
) -> int:
    """Deletes published rows older than ``older_than`` in small batches, so the purge never
    holds long locks next to the writers and the relay. Returns how many rows it deleted."""
    cutoff = timezone.now() - older_than
    deadline = time.monotonic() + time_budget
    deleted = 0
    while time.monotonic() < deadline:
        ids = list(
            OutboxEvent.objects.filter(status=OutboxStatus.PUBLISHED, published_at__lt=cutoff)
            .order_by("published_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        deleted += OutboxEvent.objects.filter(pk__in=ids, status=OutboxStatus.PUBLISHED).delete()[0]
    return deleted
