"""The analytics row: what the transformer produces to `orders_analytics` (one per event, the
order's full state after the change) and the sink loads into the ClickHouse table of the same name.

`ORDER_COLUMNS` and `clickhouse_line` are the mapping from a row to that table's columns; a test
holds them to the DDL and to docs/events.md."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec
from msgspec.structs import force_setattr

from contract.events import OrderItem, decode_with
from contract.types import (
    DATE_RANGE,
    EventType,
    Id,
    Money,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    Text,
    Timestamp,
    UInt32,
    UInt64,
    utc_in_range,
)


class AnalyticsRow(msgspec.Struct, frozen=True, kw_only=True):
    schema_version: Literal[1]
    order_id: Id
    user_id: UInt64
    user_email: Text
    order_date: date  # the UTC day of created_at
    total_amount: Money
    items_count: UInt32
    status: OrderStatus
    payment_method: PaymentMethod
    payment_status: PaymentStatus
    created_at: Timestamp
    version: Id  # the event's aggregate_version: ReplacingMergeTree's version
    event_type: EventType
    deleted_at: Timestamp | None
    is_deleted: bool  # true exactly when deleted_at is set
    items: list[OrderItem]

    def __post_init__(self) -> None:
        if not DATE_RANGE[0] <= self.order_date <= DATE_RANGE[1]:
            raise ValueError(f"order_date must lie between {DATE_RANGE[0]} and {DATE_RANGE[1]}")
        force_setattr(self, "created_at", utc_in_range(self.created_at, "created_at"))
        if self.deleted_at is not None:
            force_setattr(self, "deleted_at", utc_in_range(self.deleted_at, "deleted_at"))
        if self.is_deleted != (self.deleted_at is not None):
            raise ValueError("is_deleted must be true exactly when deleted_at is set")


# Scalar fields map one to one onto columns; the items become one array column per item field.
ITEM_COLUMNS = {
    "item_product_ids": "product_id",
    "item_skus": "sku",
    "item_names": "product_name",
    "item_quantities": "quantity",
    "item_line_totals": "line_total",
}
SCALAR_COLUMNS = tuple(f for f in AnalyticsRow.__struct_fields__ if f not in ("schema_version", "items"))
ORDER_COLUMNS = SCALAR_COLUMNS + tuple(ITEM_COLUMNS)

_row_decoder = msgspec.json.Decoder(AnalyticsRow)
_encoder = msgspec.json.Encoder()


def encode_row(row: AnalyticsRow) -> bytes:
    return _encoder.encode(row)


def decode_row(value: bytes | None) -> AnalyticsRow:
    """Parses and validates one record value of `orders_analytics`."""
    return decode_with(_row_decoder, value, "analytics row")


def _clickhouse_time(moment: datetime) -> str:
    """DateTime64 text in the basic format every ClickHouse reads without settings; the row's
    times are UTC already."""
    return moment.isoformat(sep=" ", timespec="microseconds")[:26]


def _column_value(value: object) -> object:
    if isinstance(value, datetime):
        return _clickhouse_time(value)
    if isinstance(value, bool):
        return int(value)  # UInt8
    return value


def clickhouse_values(row: AnalyticsRow) -> list[object]:
    """The row's values in ORDER_COLUMNS order, as JSONCompactEachRow takes them."""
    values = [_column_value(getattr(row, name)) for name in SCALAR_COLUMNS]
    values += [[getattr(item, field) for item in row.items] for field in ITEM_COLUMNS.values()]
    return values


def clickhouse_line(row: AnalyticsRow) -> bytes:
    """One JSONCompactEachRow line of ORDER_COLUMNS."""
    return _encoder.encode(clickhouse_values(row))
