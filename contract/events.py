"""The envelope on `order.events` and the order snapshot it carries (docs/events.md).

`decode_envelope` is the one validator of a record value: a value that breaks the contract raises
InvalidEvent with a reason naming the field, and the consumer dead-letters the record."""

from __future__ import annotations

import uuid
from typing import Literal, TypeVar

import msgspec
from msgspec.structs import force_setattr

from contract.types import (
    MONEY_PATTERN,
    MONEY_RULE,
    EventType,
    Id,
    Money,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    Quantity,
    Text,
    Timestamp,
    UInt32,
    UInt64,
    utc_in_range,
)

S = TypeVar("S", bound=msgspec.Struct)


class InvalidEvent(ValueError):
    """A message that breaks its contract; `reason` says which rule, for the dead-letter header."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OrderItem(msgspec.Struct, frozen=True, kw_only=True):
    """One order line. SKU, name and unit price are copied when the order is created."""

    product_id: Id
    sku: Text
    product_name: Text
    quantity: Quantity
    unit_price: Money
    line_total: Money


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    method: PaymentMethod
    status: PaymentStatus
    amount: Money


class OrderSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The full state of an order after a change: every event's payload, and what the API returns
    for an order."""

    order_id: Id
    version: Id
    user_id: UInt64
    user_email: Text
    status: OrderStatus
    total_amount: Money
    currency: Text
    items_count: UInt32  # the total quantity over all items
    items: list[OrderItem]
    payment: Payment
    created_at: Timestamp
    updated_at: Timestamp
    # Absent reads as null: Debezium's outbox router (kafka-connect/) drops null fields when it
    # expands the payload column into the envelope.
    deleted_at: Timestamp | None = None
    deleted_by: UInt64 | None = None  # the admin's user id on OrderDeleted

    def __post_init__(self) -> None:
        # Times are kept in UTC; order_date is created_at's UTC day, so it must fit a Date column.
        force_setattr(self, "created_at", utc_in_range(self.created_at, "payload.created_at", on_date=True))
        force_setattr(self, "updated_at", utc_in_range(self.updated_at, "payload.updated_at"))
        if self.deleted_at is not None:
            force_setattr(self, "deleted_at", utc_in_range(self.deleted_at, "payload.deleted_at"))


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    event_id: uuid.UUID  # also the record's event_id header
    event_type: EventType
    aggregate_type: Literal["order"]
    aggregate_id: Text  # the order id as text, as the record key
    aggregate_version: Id  # per order: 1 on create, +1 on every change
    occurred_at: Timestamp
    schema_version: Literal[1]  # contract.types.SCHEMA_VERSION
    payload: OrderSnapshot

    def __post_init__(self) -> None:
        force_setattr(self, "occurred_at", utc_in_range(self.occurred_at, "occurred_at"))
        if self.aggregate_id != str(self.payload.order_id):
            raise ValueError("aggregate_id must equal payload.order_id")
        if self.payload.version != self.aggregate_version:
            raise ValueError("payload.version must equal aggregate_version")
        if self.event_type == EventType.ORDER_DELETED and self.payload.deleted_at is None:
            raise ValueError("OrderDeleted needs payload.deleted_at")


_envelope_decoder = msgspec.json.Decoder(Envelope)


def decode_envelope(value: bytes | None) -> Envelope:
    """Parses and validates one record value of `order.events`."""
    return decode_with(_envelope_decoder, value, "envelope")


def decode_with(decoder: msgspec.json.Decoder[S], value: bytes | None, what: str) -> S:
    """One record value decoded and validated, or InvalidEvent with msgspec's reason (the field's
    path and rule; the money pattern said in words)."""
    if value is None:
        raise InvalidEvent("record has no value")
    try:
        return decoder.decode(value)
    except msgspec.ValidationError as exc:
        reason = str(exc).replace(f"`str` matching regex {MONEY_PATTERN!r}", MONEY_RULE)
        raise InvalidEvent(f"{what}: {reason}") from exc
    except msgspec.DecodeError as exc:  # invalid JSON or invalid UTF-8
        raise InvalidEvent(f"value is not UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:  # msgspec skips an unknown field's value recursively
        raise InvalidEvent(f"{what}: value nests too deeply to decode") from exc


def snapshot_document(snapshot: OrderSnapshot) -> dict[str, object]:
    """The snapshot as JSON-ready builtins: what the outbox row stores and the API returns."""
    document: dict[str, object] = msgspec.to_builtins(snapshot)
    return document
