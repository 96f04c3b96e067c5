"""Reads of the analytics API. Every query reads one of the refreshable views of
warehouse/schema.sql (exact, at most one 5-second refresh behind the table); none of them
sees a deleted order."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from analytics.clickhouse import database, rows


def daily_sales(*, date_from: date, date_to: date) -> list[dict[str, Any]]:
    return rows(
        f"SELECT order_date AS date, orders_count, revenue, items_sold, unique_customers "
        f"FROM {database()}.daily_sales_mv "
        "WHERE order_date BETWEEN %(date_from)s AND %(date_to)s ORDER BY order_date",
        {"date_from": date_from, "date_to": date_to},
    )


def hourly_orders(*, date_from: date, date_to: date) -> list[dict[str, Any]]:
    start = datetime.combine(date_from, time.min, tzinfo=UTC)
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC)
    return rows(
        f"SELECT hour, orders_count, revenue, items_sold FROM {database()}.hourly_sales_mv "
        "WHERE hour >= %(start)s AND hour < %(end)s ORDER BY hour",
        {"start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)},
    )


def status_distribution() -> list[dict[str, Any]]:
    return rows(
        f"SELECT status, orders_count, total_amount FROM {database()}.order_status_mv "
        "ORDER BY orders_count DESC, status"
    )


_USER_COLUMNS = (
    "user_id, user_email, orders_count, paying_orders_count, total_spent, first_order_at, last_order_at"
)


def user_stats(*, user_id: int) -> dict[str, Any] | None:
    found = rows(
        f"SELECT {_USER_COLUMNS} FROM {database()}.user_analytics_mv WHERE user_id = %(user_id)s",
        {"user_id": user_id},
    )
    return found[0] if found else None


def top_customers(*, limit: int) -> list[dict[str, Any]]:
    return rows(
        f"SELECT {_USER_COLUMNS} FROM {database()}.user_analytics_mv "
        "ORDER BY total_spent DESC, user_id LIMIT %(limit)s",
        {"limit": limit},
    )


def top_products(*, limit: int) -> list[dict[str, Any]]:
    return rows(
        f"SELECT product_id, sku, product_name, units_sold, revenue, orders_count "
        f"FROM {database()}.top_products_mv ORDER BY revenue DESC, product_id LIMIT %(limit)s",
        {"limit": limit},
    )


def overview(*, date_from: date, date_to: date) -> dict[str, Any]:
    """Revenue figures of the range (cancelled and refunded orders excluded, as in daily_sales),
    plus the current status distribution and best-selling products."""
    totals = rows(
        "SELECT sum(orders_count) AS orders_count, sum(revenue) AS revenue, sum(items_sold) AS items_sold "
        f"FROM {database()}.daily_sales_mv "
        "WHERE order_date BETWEEN %(date_from)s AND %(date_to)s",
        {"date_from": date_from, "date_to": date_to},
    )[0]
    return {
        "date_from": date_from,
        "date_to": date_to,
        "orders_count": int(totals["orders_count"] or 0),
        "revenue": totals["revenue"] or 0,
        "items_sold": int(totals["items_sold"] or 0),
        "status_distribution": status_distribution(),
        "top_products": top_products(limit=5),
    }
