"""Decoding and validation of the order event envelope (docs/events.md). Anything that does not
follow the contract raises InvalidEvent with a reason, and goes to the dead-letter topic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

EVENT_TYPES = frozenset({"OrderCreated", "OrderStatusChanged", "OrderDeleted"})
ORDER_STATUSES = frozenset({"PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED"})
PAYMENT_METHODS = frozenset({"CARD", "BANK_TRANSFER", "PAYPAL", "CASH_ON_DELIVERY"})
PAYMENT_STATUSES = frozenset({"PENDING", "COMPLETED", "REFUNDED", "CANCELLED"})
SCHEMA_VERSION = 1


class InvalidEvent(ValueError):
    """A message that breaks its contract; `reason` says which rule, for the dead-letter header."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class OrderItem:
    product_id: int
    sku: str
    product_name: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@dataclass(frozen=True, kw_only=True)
class OrderEvent:
    """A validated envelope with its order snapshot."""

    event_id: str
    event_type: str
    order_id: int
    version: int
    occurred_at: datetime
    user_id: int
    user_email: str
    status: str
    total_amount: Decimal
    items_count: int
    items: tuple[OrderItem, ...]
    payment_method: str
    payment_status: str
    created_at: datetime
    deleted_at: datetime | None


def _field(obj: dict[str, Any], name: str, where: str) -> Any:
    if name not in obj:
        raise InvalidEvent(f"{where}{name} is missing")
    return obj[name]


def _int(obj: dict[str, Any], name: str, where: str = "", minimum: int = 0) -> int:
    value = _field(obj, name, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidEvent(f"{where}{name} must be an integer >= {minimum}")
    return value


def _text(obj: dict[str, Any], name: str, where: str = "", choices: frozenset[str] | None = None) -> str:
    value = _field(obj, name, where)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{where}{name} must be a non-empty string")
    if choices is not None and value not in choices:
        raise InvalidEvent(f"{where}{name} must be one of {', '.join(sorted(choices))}")
    return value


def _decimal(obj: dict[str, Any], name: str, where: str = "") -> Decimal:
    value = _field(obj, name, where)
    if not isinstance(value, str):
        raise InvalidEvent(f"{where}{name} must be a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise InvalidEvent(f"{where}{name} must be a decimal string") from exc
    if not amount.is_finite() or amount < 0:
        raise InvalidEvent(f"{where}{name} must be a non-negative decimal")
    return amount


def parse_timestamp(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be an ISO-8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads the Z suffix itself
    except ValueError as exc:
        raise InvalidEvent(f"{name} must be an ISO-8601 timestamp") from exc
    if parsed.tzinfo is None:
        raise InvalidEvent(f"{name} must carry a time zone (UTC, Z suffix)")
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidEvent(f"{name} must be a JSON object")
    return value


def _items(payload: dict[str, Any]) -> tuple[OrderItem, ...]:
    raw = _field(payload, "items", "payload.")
    if not isinstance(raw, list):
        raise InvalidEvent("payload.items must be a list")
    items = []
    for index, entry in enumerate(raw):
        where = f"payload.items[{index}]."
        item = _object(entry, where[:-1])
        items.append(
            OrderItem(
                product_id=_int(item, "product_id", where, minimum=1),
                sku=_text(item, "sku", where),
                product_name=_text(item, "product_name", where),
                quantity=_int(item, "quantity", where, minimum=1),
                unit_price=_decimal(item, "unit_price", where),
                line_total=_decimal(item, "line_total", where),
            )
        )
    return tuple(items)


def decode_event(value: bytes | None) -> OrderEvent:
    """Parses and validates one record value of `order.events`."""
    if value is None:
        raise InvalidEvent("record has no value")
    try:
        envelope = _object(orjson.loads(value), "envelope")
    except orjson.JSONDecodeError as exc:  # invalid UTF-8 included
        raise InvalidEvent(f"value is not UTF-8 JSON: {exc}") from exc
    if envelope.get("schema_version") != SCHEMA_VERSION:
        raise InvalidEvent(f"schema_version must be {SCHEMA_VERSION}")
    if envelope.get("aggregate_type") != "order":
        raise InvalidEvent("aggregate_type must be 'order'")
    event_type = _text(envelope, "event_type", choices=EVENT_TYPES)
    aggregate_id = _text(envelope, "aggregate_id")
    version = _int(envelope, "aggregate_version", minimum=1)
    payload = _object(_field(envelope, "payload", ""), "payload")
    order_id = _int(payload, "order_id", "payload.", minimum=1)
    if aggregate_id != str(order_id):
        raise InvalidEvent("aggregate_id must equal payload.order_id")
    if _int(payload, "version", "payload.", minimum=1) != version:
        raise InvalidEvent("payload.version must equal aggregate_version")
    payment = _object(_field(payload, "payment", "payload."), "payload.payment")
    raw_deleted_at = payload.get("deleted_at")
    deleted_at = None if raw_deleted_at is None else parse_timestamp(raw_deleted_at, "payload.deleted_at")
    if event_type == "OrderDeleted" and deleted_at is None:
        raise InvalidEvent("OrderDeleted needs payload.deleted_at")
    return OrderEvent(
        event_id=_text(envelope, "event_id"),
        event_type=event_type,
        order_id=order_id,
        version=version,
        occurred_at=parse_timestamp(_field(envelope, "occurred_at", ""), "occurred_at"),
        user_id=_int(payload, "user_id", "payload."),
        user_email=_text(payload, "user_email", "payload."),
        status=_text(payload, "status", "payload.", ORDER_STATUSES),
        total_amount=_decimal(payload, "total_amount", "payload."),
        items_count=_int(payload, "items_count", "payload."),
        items=_items(payload),
        payment_method=_text(payment, "method", "payload.payment.", PAYMENT_METHODS),
        payment_status=_text(payment, "status", "payload.payment.", PAYMENT_STATUSES),
        created_at=parse_timestamp(_field(payload, "created_at", "payload."), "payload.created_at"),
        deleted_at=deleted_at,
    )
