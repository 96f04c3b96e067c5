"""The analytics row: what the transformer produces to `orders_analytics` and the sink inserts.

`transform` is the pure step from a validated event to a row with the order's full state after the
change; `encode_row`/`decode_row` are the JSON wire format on the analytics topic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from consumers.events import (
    EVENT_TYPES,
    ORDER_STATUSES,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
    InvalidEvent,
    OrderEvent,
    OrderItem,
    parse_timestamp,
)

ANALYTICS_SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class AnalyticsRow:
    order_id: int
    user_id: int
    user_email: str
    order_date: date
    total_amount: Decimal
    items_count: int
    status: str
    payment_method: str
    payment_status: str
    created_at: datetime
    version: int
    event_type: str
    deleted_at: datetime | None
    is_deleted: bool
    items: tuple[OrderItem, ...]


def transform(event: OrderEvent) -> AnalyticsRow:
    return AnalyticsRow(
        order_id=event.order_id,
        user_id=event.user_id,
        user_email=event.user_email,
        order_date=event.created_at.date(),
        total_amount=event.total_amount,
        items_count=event.items_count,
        status=event.status,
        payment_method=event.payment_method,
        payment_status=event.payment_status,
        created_at=event.created_at,
        version=event.version,
        event_type=event.event_type,
        deleted_at=event.deleted_at,
        # A soft delete is the only way out: the deleted flag follows deleted_at.
        is_deleted=event.deleted_at is not None,
        items=event.items,
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def encode_row(row: AnalyticsRow) -> bytes:
    document = {
        "schema_version": ANALYTICS_SCHEMA_VERSION,
        "order_id": row.order_id,
        "user_id": row.user_id,
        "user_email": row.user_email,
        "order_date": row.order_date.isoformat(),
        "total_amount": str(row.total_amount),
        "items_count": row.items_count,
        "status": row.status,
        "payment_method": row.payment_method,
        "payment_status": row.payment_status,
        "created_at": _iso(row.created_at),
        "version": row.version,
        "event_type": row.event_type,
        "deleted_at": None if row.deleted_at is None else _iso(row.deleted_at),
        "is_deleted": row.is_deleted,
        "items": [
            {
                "product_id": item.product_id,
                "sku": item.sku,
                "product_name": item.product_name,
                "quantity": item.quantity,
                "unit_price": str(item.unit_price),
                "line_total": str(item.line_total),
            }
            for item in row.items
        ],
    }
    return orjson.dumps(document)


def decode_row(value: bytes | None) -> AnalyticsRow:
    """Parses one record value of `orders_analytics`; raises InvalidEvent when it is malformed."""
    if value is None:
        raise InvalidEvent("record has no value")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"value is not UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema_version") != ANALYTICS_SCHEMA_VERSION:
        raise InvalidEvent(f"analytics row must be an object with schema_version {ANALYTICS_SCHEMA_VERSION}")
    try:
        row = _row_of(doc)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        if isinstance(exc, InvalidEvent):
            raise
        raise InvalidEvent(f"malformed analytics row: {exc!r}") from exc
    return row


def _checked(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidEvent(f"{name} must be of type {kind.__name__}")
    return value


def _choice(value: Any, choices: frozenset[str], name: str) -> str:
    if value not in choices:
        raise InvalidEvent(f"{name} must be one of {', '.join(sorted(choices))}")
    return str(value)


def _row_of(doc: dict[str, Any]) -> AnalyticsRow:
    deleted_at = None if doc["deleted_at"] is None else parse_timestamp(doc["deleted_at"], "deleted_at")
    is_deleted = _checked(doc["is_deleted"], bool, "is_deleted")
    if is_deleted != (deleted_at is not None):
        raise InvalidEvent("is_deleted must be true exactly when deleted_at is set")
    version = _checked(doc["version"], int, "version")
    order_id = _checked(doc["order_id"], int, "order_id")
    if version < 1 or order_id < 1:
        raise InvalidEvent("order_id and version must be positive")
    return AnalyticsRow(
        order_id=order_id,
        user_id=_checked(doc["user_id"], int, "user_id"),
        user_email=_checked(doc["user_email"], str, "user_email"),
        order_date=date.fromisoformat(_checked(doc["order_date"], str, "order_date")),
        total_amount=Decimal(_checked(doc["total_amount"], str, "total_amount")),
        items_count=_checked(doc["items_count"], int, "items_count"),
        status=_choice(doc["status"], ORDER_STATUSES, "status"),
        payment_method=_choice(doc["payment_method"], PAYMENT_METHODS, "payment_method"),
        payment_status=_choice(doc["payment_status"], PAYMENT_STATUSES, "payment_status"),
        created_at=parse_timestamp(doc["created_at"], "created_at"),
        version=version,
        event_type=_choice(doc["event_type"], EVENT_TYPES, "event_type"),
        deleted_at=deleted_at,
        is_deleted=is_deleted,
        items=tuple(
            OrderItem(
                product_id=_checked(item["product_id"], int, "items.product_id"),
                sku=_checked(item["sku"], str, "items.sku"),
                product_name=_checked(item["product_name"], str, "items.product_name"),
                quantity=_checked(item["quantity"], int, "items.quantity"),
                unit_price=Decimal(_checked(item["unit_price"], str, "items.unit_price")),
                line_total=Decimal(_checked(item["line_total"], str, "items.line_total")),
            )
            for item in _checked(doc["items"], list, "items")
        ),
    )
