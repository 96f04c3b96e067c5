"""Input and output schemas of the analytics API. Money is a decimal string, as in the orders API."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from ninja import Field, Schema
from pydantic import PlainSerializer

Money = Annotated[Decimal, PlainSerializer(lambda value: f"{value:.2f}", return_type=str)]

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
# ClickHouse's Date type covers these days; outside them a range can match nothing.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2149, 6, 6)


class DateRangeQuery(Schema):
    date_from: date | None = Field(
        None,
        ge=FIRST_DAY,
        le=LAST_DAY,
        description=f"first day (UTC); default: {DEFAULT_RANGE_DAYS} days ago",
    )
    date_to: date | None = Field(
        None, ge=FIRST_DAY, le=LAST_DAY, description="last day, inclusive (UTC); default: today"
    )


class LimitQuery(Schema):
    limit: int = Field(10, ge=1, le=100)


class DailySalesRow(Schema):
    date: date
    orders_count: int
    revenue: Money
    items_sold: int
    unique_customers: int


class HourlyOrdersRow(Schema):
    hour: datetime
    orders_count: int
    revenue: Money
    items_sold: int


class StatusRow(Schema):
    status: str
    orders_count: int
    total_amount: Money


class Fresh(Schema):
    # Every order change committed before this moment is in the figures (README, "Freshness
    # watermark"); null while the pipeline has not measured it yet.
    as_of: datetime | None


class UserStats(Schema):
    user_id: int
    user_email: str
    orders_count: int
    paying_orders_count: int
    total_spent: Money
    first_order_at: datetime
    last_order_at: datetime


class UserStatsOut(UserStats, Fresh):
    pass


class ProductRow(Schema):
    product_id: int
    sku: str
    product_name: str
    units_sold: int
    revenue: Money
    orders_count: int


class DailySalesOut(Fresh):
    date_from: date
    date_to: date
    items: list[DailySalesRow]


class HourlyOrdersOut(Fresh):
    date_from: date
    date_to: date
    items: list[HourlyOrdersRow]


class StatusDistributionOut(Fresh):
    items: list[StatusRow]


class UserListOut(Fresh):
    items: list[UserStats]


class TopProductsOut(Fresh):
    items: list[ProductRow]


class OverviewOut(Fresh):
    date_from: date
    date_to: date
    orders_count: int
    revenue: Money
    items_sold: int
    status_distribution: list[StatusRow]
    top_products: list[ProductRow]
