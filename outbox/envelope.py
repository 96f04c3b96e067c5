"""The event envelope as it travels on Kafka (docs/events.md): key, value and headers of a record."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from outbox.models import OutboxEvent


class EnvelopeSource(Protocol):
    """An outbox row, or the relay's lighter copy of one (outbox.relay.ClaimedEvent)."""

    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def event_type(self) -> str: ...
    @property
    def aggregate_type(self) -> str: ...
    @property
    def aggregate_id(self) -> str: ...
    @property
    def aggregate_version(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def payload_json(self) -> str: ...


def _envelope_head(event: EnvelopeSource) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "aggregate_version": event.aggregate_version,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "schema_version": event.schema_version,
    }


def envelope_of(event: OutboxEvent) -> dict[str, Any]:
    return {**_envelope_head(event), "payload": event.payload}


def envelope_json(event: EnvelopeSource) -> str:
    """The envelope as compact JSON text. The relay's rows carry the payload as the JSON text it
    is stored as (valid JSON: the column accepts nothing else), spliced in as it is instead of being
    parsed and serialised again for every event."""
    head = json.dumps(_envelope_head(event), separators=(",", ":"))
    return f'{head[:-1]},"payload":{event.payload_json}}}'


def kafka_record_of(event: EnvelopeSource) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers). The key is the aggregate id, so one order stays on one partition."""
    value = envelope_json(event).encode()
    headers = [
        ("event_id", str(event.event_id).encode()),
        ("event_type", event.event_type.encode()),
        ("schema_version", str(event.schema_version).encode()),
    ]
    return event.aggregate_id.encode(), value, headers
