"""The event envelope as it travels on Kafka (docs/events.md): key, value and headers of a record."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from outbox.models import OutboxEvent


class EnvelopeSource(Protocol):
    """An outbox row, or the relay's lighter copy of one (outbox.relay.ClaimedEvent)."""

    @property
    def event_id(self) -> uuid.UUID | str: ...
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
    def payload_json(self) -> str | bytes: ...


# Times as ISO-8601 in UTC with a Z (the contract's form), written by orjson itself.
_JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def _envelope_head_json(event: EnvelopeSource) -> bytes:
    occurred_at = event.occurred_at
    if occurred_at.utcoffset():  # orjson keeps an offset as it is: only UTC becomes ...Z
        occurred_at = occurred_at.astimezone(UTC)
    head = {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "aggregate_version": event.aggregate_version,
        "occurred_at": occurred_at,
        "schema_version": event.schema_version,
    }
    return orjson.dumps(head, option=_JSON_OPTIONS)


def envelope_of(event: OutboxEvent) -> dict[str, Any]:
    return {**orjson.loads(_envelope_head_json(event)), "payload": event.payload}


def envelope_json(event: EnvelopeSource) -> bytes:
    """The envelope as compact JSON. The relay's rows carry the payload as the JSON text it is
    stored as (valid JSON: the column accepts nothing else), spliced in as it is instead of being
    parsed and serialised again for every event."""
    head = _envelope_head_json(event)
    payload = event.payload_json
    # MySQL 8 hands a JSON column over as bytes (its binary charset), MariaDB as text.
    payload_bytes = payload if isinstance(payload, bytes) else payload.encode()
    return b"".join((head[:-1], b',"payload":', payload_bytes, b"}"))


def kafka_record_of(event: EnvelopeSource) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers). The key is the aggregate id, so one order stays on one partition."""
    value = envelope_json(event)
    headers = [
        ("event_id", str(event.event_id).encode()),
        ("event_type", event.event_type.encode()),
        ("schema_version", str(event.schema_version).encode()),
    ]
    return event.aggregate_id.encode(), value, headers
