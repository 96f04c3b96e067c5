"""Field types of the contract, bounded by the ClickHouse columns they are stored in
(warehouse schema, `orders_analytics`).

A value outside these bounds is refused when an event or row is decoded, instead of reaching
ClickHouse, which would either refuse the whole insert (a Decimal too big) or store it altered
without a word (an integer wrapped modulo its width, a third decimal place cut, a date clamped).
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Annotated

from msgspec import Meta

SCHEMA_VERSION = 1

# UInt64 columns. msgspec checks integer bounds only within int64; order, user and product ids
# are Django BigAutoFields, which stop there too.
ID_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1

Id = Annotated[int, Meta(ge=1, le=ID_MAX)]
UInt64 = Annotated[int, Meta(ge=0, le=ID_MAX)]
UInt32 = Annotated[int, Meta(ge=0, le=UINT32_MAX)]
Quantity = Annotated[int, Meta(ge=1, le=UINT32_MAX)]
Text = Annotated[str, Meta(min_length=1)]

# Decimal(18, 2): at most 16 digits before the point and 2 after, never negative here. A string,
# as the contract carries money, so 1E+30 or 1.239 cannot pass as a number ClickHouse rounds.
MONEY_PATTERN = r"^(0|[1-9][0-9]{0,15})(\.[0-9]{1,2})?$"
MONEY_RULE = "a non-negative decimal string with at most 16 digits before the point and 2 after"
Money = Annotated[str, Meta(pattern=MONEY_PATTERN, description="decimal string, Decimal(18, 2)")]

# A timestamp with its time zone; its range is checked by `utc_in_range` once it is decoded.
Timestamp = Annotated[datetime, Meta(tz=True)]

# DateTime64(6, 'UTC') holds 1900-01-01 to 2299-12-31; Date (order_date) 1970-01-01 to 2149-06-06.
DATETIME64_RANGE = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2299, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
DATE_RANGE = (date(1970, 1, 1), date(2149, 6, 6))


class EventType(enum.StrEnum):
    ORDER_CREATED = "OrderCreated"
    ORDER_STATUS_CHANGED = "OrderStatusChanged"
    ORDER_DELETED = "OrderDeleted"


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


class PaymentMethod(enum.StrEnum):
    CARD = "CARD"
    BANK_TRANSFER = "BANK_TRANSFER"
    PAYPAL = "PAYPAL"
    CASH_ON_DELIVERY = "CASH_ON_DELIVERY"


class PaymentStatus(enum.StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"


def utc_in_range(moment: datetime, name: str, *, on_date: bool = False) -> datetime:
    """`moment` in UTC, or ValueError naming the field when no DateTime64(6) column (or, with
    `on_date`, no Date column for its day) can hold it. Checked on the wall-clock value first: a
    time zone offset can push year 1 or 9999 out of what Python itself can represent in UTC."""
    low, high = DATETIME64_RANGE
    if not low.year <= moment.year <= high.year:
        raise ValueError(f"{name} must lie between {low:%Y-%m-%d} and {high:%Y-%m-%d} (UTC)")
    utc = moment.astimezone(UTC)
    if not low <= utc <= high:
        raise ValueError(f"{name} must lie between {low:%Y-%m-%d} and {high:%Y-%m-%d} (UTC)")
    if on_date and not DATE_RANGE[0] <= utc.date() <= DATE_RANGE[1]:
        first, last = DATE_RANGE
        raise ValueError(f"{name} must lie between {first} and {last} (UTC), the range of its date column")
    return utc
