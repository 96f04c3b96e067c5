"""The reconcile of the incremental views (`manage.py analytics_reconcile`): every `*_mv` view
against its `*_live` view over orders_analytics, and against the same figures computed from MySQL.

The MySQL side is read while the pipeline may be running, so a difference can be an order still on
its way; `reconcile` reads both sides again until they agree or `settle` seconds have passed, and
only what still differs then is reported."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from consumers.views import NOT_REVENUE, differences
from warehouse.client import ClickHouseClient, check_identifier

# Each view's figures as (key, values) rows: the same from the view and from MySQL.
VIEW_FIGURES = {
    "daily_sales_mv": "SELECT order_date, orders_count, revenue, items_sold, unique_customers",
    "hourly_sales_mv": "SELECT hour, orders_count, revenue, items_sold",
    "order_status_mv": "SELECT status, orders_count, total_amount",
    "user_analytics_mv": "SELECT user_id, orders_count, paying_orders_count, total_spent",
    "top_products_mv": "SELECT product_id, units_sold, revenue, orders_count",
}

Figures = dict[str, dict[Any, tuple[Any, ...]]]


@dataclass(frozen=True)
class Report:
    live: list[str]  # *_mv against *_live
    mysql: list[str]  # *_mv against MySQL

    @property
    def clean(self) -> bool:
        return not self.live and not self.mysql


def view_figures(client: ClickHouseClient, database: str) -> Figures:
    database = check_identifier(database)
    figures: Figures = {}
    for view, select in VIEW_FIGURES.items():
        rows = client.query(f"{select} FROM {database}.{view}").result_rows
        figures[view] = {_key(row[0]): tuple(_value(v) for v in row[1:]) for row in rows}
    return figures


def mysql_figures() -> Figures:
    """The views' figures computed from the orders in MySQL that are not deleted."""
    from django.db.models import Count, DecimalField, Q, Sum, Value
    from django.db.models.functions import Coalesce, TruncDate, TruncHour

    from orders.models import Order, OrderItem

    live = Order.objects.filter(deleted_at__isnull=True)
    paying = live.exclude(status__in=NOT_REVENUE)
    zero = Value(Decimal("0.00"), output_field=DecimalField())
    figures: Figures = {}
    for view, trunc in (("daily_sales_mv", TruncDate), ("hourly_sales_mv", TruncHour)):
        items = {
            row["group"]: row["units"]
            for row in OrderItem.objects.filter(order__in=paying)
            .annotate(group=trunc("order__created_at", tzinfo=UTC))
            .values("group")
            .annotate(units=Sum("quantity"))
        }
        figures[view] = {}
        for row in (
            paying.annotate(group=trunc("created_at", tzinfo=UTC))
            .values("group")
            .annotate(n=Count("id"), revenue=Sum("total_amount"), customers=Count("user_id", distinct=True))
        ):
            values: tuple[Any, ...] = (row["n"], row["revenue"], items.get(row["group"], 0))
            if view == "daily_sales_mv":
                values += (row["customers"],)
            figures[view][_key(row["group"])] = values
    figures["order_status_mv"] = {
        row["status"]: (row["n"], row["amount"])
        for row in live.values("status").annotate(n=Count("id"), amount=Sum("total_amount"))
    }
    figures["user_analytics_mv"] = {
        row["user_id"]: (row["n"], row["paying"], row["spent"])
        for row in live.values("user_id").annotate(
            n=Count("id"),
            paying=Count("id", filter=~Q(status__in=NOT_REVENUE)),
            spent=Coalesce(Sum("total_amount", filter=~Q(status__in=NOT_REVENUE)), zero),
        )
    }
    figures["top_products_mv"] = {
        row["product_id"]: (row["units"], row["revenue"], row["n"])
        for row in OrderItem.objects.filter(order__in=paying)
        .values("product_id")
        .annotate(units=Sum("quantity"), revenue=Sum("line_total"), n=Count("order_id", distinct=True))
    }
    return {
        view: {k: tuple(_value(v) for v in values) for k, values in rows.items()}
        for view, rows in figures.items()
    }


def compare(views: Figures, mysql: Figures, limit: int = 5) -> list[str]:
    problems = []
    for view in VIEW_FIGURES:
        got, want = views.get(view, {}), mysql.get(view, {})
        wrong = sorted((k for k in got.keys() | want.keys() if got.get(k) != want.get(k)), key=str)
        for key in wrong[:limit]:
            problems.append(f"{view}: {key}: view {got.get(key)} != MySQL {want.get(key)}")
        if len(wrong) > limit:
            problems.append(f"{view}: {len(wrong) - limit} more groups differ from MySQL")
    return problems


def reconcile(
    client: ClickHouseClient,
    database: str,
    *,
    settle: float = 10.0,
    with_mysql: bool = True,
    read_mysql: Callable[[], Figures] = mysql_figures,
) -> Report:
    """Compares until the views agree or `settle` seconds have passed; the last comparison's report."""
    deadline = time.monotonic() + settle
    while True:
        report = Report(
            live=differences(client, database),
            mysql=compare(view_figures(client, database), read_mysql()) if with_mysql else [],
        )
        if report.clean or time.monotonic() >= deadline:
            return report
        time.sleep(1.0)


def _key(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return value


def _value(value: Any) -> Any:
    return value.quantize(Decimal("0.01")) if isinstance(value, Decimal) else value
