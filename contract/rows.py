"""The analytics row: what the transformer produces to `orders_analytics` (one per event, the
order's full state after the change) and the sink loads into the ClickHouse table of the same name.

A deleted order's row is its delete row, and on the compacted topic that row outlives the order for
good (ClickHouse removes it 7 days after the delete). So it carries only what honouring the delete
needs: the order id, the order's day (the table's partition, where the delete row must meet the
order's earlier versions), the version and deleted_at. The customer, the money, the status and the
lines (`DETAIL_FIELDS`) are left out.

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

# What a row of an order that is not deleted carries beyond what a delete row needs; each is None
# on a delete row (and absent from its JSON).
DETAIL_FIELDS = (
    "user_id",
    "user_email",
    "total_amount",
    "items_count",
    "status",
    "payment_method",
    "payment_status",
    "created_at",
    "items",
)


class AnalyticsRow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One row of `orders_analytics`. Every field of `DETAIL_FIELDS` is required unless the row is
    a delete row, which has none: the details of a delete row written before delete rows left them
    out are dropped as it is decoded, so a rebuild from an old topic stores none either."""

    schema_version: Literal[1]
    order_id: Id
    user_id: UInt64 | None = None
    user_email: Text | None = None
    order_date: date  # the UTC day of created_at
    total_amount: Money | None = None
    items_count: UInt32 | None = None
    status: OrderStatus | None = None
    payment_method: PaymentMethod | None = None
    payment_status: PaymentStatus | None = None
    created_at: Timestamp | None = None
    version: Id  # the event's aggregate_version: ReplacingMergeTree's version
    event_type: EventType
    deleted_at: Timestamp | None
    is_deleted: bool  # true exactly when deleted_at is set
    items: list[OrderItem] | None = None

    def __post_init__(self) -> None:
        if not DATE_RANGE[0] <= self.order_date <= DATE_RANGE[1]:
            raise ValueError(f"order_date must lie between {DATE_RANGE[0]} and {DATE_RANGE[1]}")
        if self.is_deleted != (self.deleted_at is not None):
            raise ValueError("is_deleted must be true exactly when deleted_at is set")
        if self.deleted_at is not None:
            force_setattr(self, "deleted_at", utc_in_range(self.deleted_at, "deleted_at"))
            for name in DETAIL_FIELDS:
                force_setattr(self, name, None)
            return
        if self.created_at is not None:
            force_setattr(self, "created_at", utc_in_range(self.created_at, "created_at"))
        missing = [name for name in DETAIL_FIELDS if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a row of an order that is not deleted needs {', '.join(missing)}")


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


# What a delete row stores in the columns of the details it does not carry: each column's empty
# value, so the table's row of a deleted order holds no more than its delete row.
_EMPTY_DETAIL_COLUMNS: dict[str, object] = {
    "user_id": 0,
    "user_email": "",
    "total_amount": "0.00",
    "items_count": 0,
    "status": "",
    "payment_method": "",
    "payment_status": "",
    "created_at": _clickhouse_time(datetime(1970, 1, 1)),
}


def _column_value(row: AnalyticsRow, name: str) -> object:
    value = getattr(row, name)
    if value is None and name in _EMPTY_DETAIL_COLUMNS:
        return _EMPTY_DETAIL_COLUMNS[name]
    if isinstance(value, datetime):
        return _clickhouse_time(value)
    if isinstance(value, bool):
        return int(value)  # UInt8
    return value


def clickhouse_values(row: AnalyticsRow) -> list[object]:
    """The row's values in ORDER_COLUMNS order, as JSONCompactEachRow takes them."""
    values = [_column_value(row, name) for name in SCALAR_COLUMNS]
    items = row.items or []
    values += [[getattr(item, field) for item in items] for field in ITEM_COLUMNS.values()]
    return values


def clickhouse_line(row: AnalyticsRow) -> bytes:
    """One JSONCompactEachRow line of ORDER_COLUMNS."""
    return _encoder.encode(clickhouse_values(row))
