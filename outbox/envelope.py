"""The event envelope as it travels on Kafka (docs/events.md): key, value and headers of a record."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from outbox.models import OutboxEvent


def envelope_of(event: OutboxEvent) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "aggregate_version": event.aggregate_version,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "schema_version": event.schema_version,
        "payload": event.payload,
    }


def kafka_record_of(event: OutboxEvent) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers). The key is the aggregate id, so one order stays on one partition."""
    value = json.dumps(envelope_of(event), cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    headers = [
        ("event_id", str(event.event_id).encode()),
        ("event_type", event.event_type.encode()),
        ("schema_version", str(event.schema_version).encode()),
    ]
    return event.aggregate_id.encode(), value, headers
