"""Runs every SQL panel of the Grafana dashboards against real engines loaded with generated data:
ClickHouse panels against chDB with the project's DDL (warehouse/schema.sql, applied by the
warehouse migration), MySQL panels against the MariaDB test database with the outbox table from
the Django migrations. Each panel must return the columns it is built around, with rows, and the
headline numbers must equal what the generated data says."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from consumers.views import rebuild
from outbox.models import OutboxEvent, OutboxStatus
from tests.ops.grafana_queries import PanelQuery, panel_queries, render_clickhouse, render_mysql
from warehouse.schema import migrate

# The columns each panel is built around (field names in its overrides, legends and tables).
EXPECTED_COLUMNS: dict[tuple[str, int], list[str]] = {
    ("outbox-sales", 1): ["revenue"],
    ("outbox-sales", 2): ["orders"],
    ("outbox-sales", 3): ["average_order_value"],
    ("outbox-sales", 4): ["customers"],
    ("outbox-sales", 5): ["time", "revenue", "orders_count"],
    ("outbox-sales", 6): ["time", "orders_count", "revenue"],
    ("outbox-sales", 7): ["status", "orders_count"],
    ("outbox-sales", 8): ["user_id", "user_email", "orders_count", "total_spent", "last_order_at"],
    ("outbox-sales", 9): ["product_id", "sku", "product_name", "units_sold", "revenue", "orders_count"],
    ("outbox-sales", 10): ["freshness_lag_seconds"],
    ("outbox-pipeline-health", 1): ["pending"],
    ("outbox-pipeline-health", 2): ["oldest_pending_age_seconds"],
    ("outbox-pipeline-health", 3): ["failed"],
    ("outbox-pipeline-health", 4): ["active_orders", "deleted_orders"],
    ("outbox-pipeline-health", 5): ["time", "published"],
    ("outbox-pipeline-health", 9): ["table", "rows", "bytes_on_disk"],
    ("outbox-pipeline-health", 12): ["freshness_lag_seconds"],
}

NOW = datetime.now(UTC).replace(microsecond=0)
TIME_FROM = NOW - timedelta(days=7)
TIME_TO = NOW + timedelta(minutes=1)
NOT_REVENUE = {"CANCELLED", "REFUNDED"}
STATUSES = ["PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED"]


def sql_panels(datasource_type: str) -> list[PanelQuery]:
    return [q for q in panel_queries() if q.datasource_type == datasource_type]


def test_every_sql_panel_has_an_expectation() -> None:
    """A new SQL panel must be added to EXPECTED_COLUMNS, so no panel goes unexecuted."""
    sql = {(q.dashboard_uid, q.panel_id) for q in panel_queries() if q.datasource_type != "prometheus"}
    assert sql == set(EXPECTED_COLUMNS)


# --- ClickHouse (chDB) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    order_id: int
    user_id: int
    status: str
    total: Decimal
    items: list[tuple[int, int, Decimal]]  # (product_id, quantity, unit_price)
    created_at: datetime
    deleted: bool


def generate_orders(rng: random.Random, count: int) -> list[Order]:
    orders = []
    for order_id in range(1, count + 1):
        items = [
            (rng.randint(1, 8), rng.randint(1, 3), Decimal(rng.randint(100, 9999)) / 100)
            for _ in range(rng.randint(1, 3))
        ]
        orders.append(
            Order(
                order_id=order_id,
                user_id=rng.randint(1, 12),
                status=rng.choice(STATUSES),
                total=sum((q * p for _, q, p in items), Decimal("0")),
                items=items,
                created_at=NOW - timedelta(minutes=rng.randint(5, 5 * 24 * 60)),
                deleted=rng.random() < 0.15,
            )
        )
    return orders


def order_versions(order: Order) -> list[dict[str, Any]]:
    """The order's history as analytics rows: created PENDING (v1), then its final status (v2),
    then, for some, deleted (v3), so the dashboards only look right when the views keep the latest
    active version of each order."""
    history = [(1, "PENDING", False), (2, order.status, False)]
    if order.deleted:
        history.append((3, order.status, True))
    rows = []
    for version, status, deleted in history:
        rows.append(
            {
                "order_id": order.order_id,
                "user_id": order.user_id,
                "user_email": f"user{order.user_id}@example.com",
                "order_date": order.created_at.date(),
                "total_amount": order.total,
                "items_count": sum(q for _, q, _ in order.items),
                "status": status,
                "payment_method": "CARD",
                "payment_status": "COMPLETED",
                "created_at": order.created_at,
                "version": version,
                "event_type": "OrderDeleted"
                if deleted
                else ("OrderCreated" if version == 1 else "OrderStatusChanged"),
                "deleted_at": NOW - timedelta(minutes=1) if deleted else None,
                "is_deleted": 1 if deleted else 0,
                "item_product_ids": [p for p, _, _ in order.items],
                "item_skus": [f"SKU-{p}" for p, _, _ in order.items],
                "item_names": [f"Product {p}" for p, _, _ in order.items],
                "item_quantities": [q for _, q, _ in order.items],
                "item_line_totals": [q * price for _, q, price in order.items],
            }
        )
    return rows


def table_columns(client: Any, database: str, table: str) -> list[str]:
    result = client.query(
        f"SELECT name FROM system.columns WHERE database = '{database}' AND table = '{table}' "
        "AND default_kind NOT IN ('MATERIALIZED', 'ALIAS') ORDER BY position"
    )
    return [row[0] for row in result.result_rows]


def insert_rows(client: Any, database: str, table: str, rows: list[dict[str, Any]]) -> None:
    """Inserts the generated rows into the table as the DDL defines it; a column the generator does
    not know fails the test, so a schema change is noticed here rather than in production."""
    columns = table_columns(client, database, table)
    assert columns, f"the DDL created no table {database}.{table}"
    unknown = [c for c in columns if c not in rows[0]]
    assert not unknown, f"{table}: the generator does not know the columns {unknown}; update this test"
    client.insert(
        table,
        [[row[c] for c in columns] for row in rows],
        column_names=columns,
        database=database,
        settings={"async_insert": 0, "wait_for_async_insert": 1},
    )


def load_orders(client: Any, database: str, orders: list[Order]) -> None:
    insert_rows(client, database, "orders_analytics", [r for o in orders for r in order_versions(o)])
    tables = set(client.query(f"SHOW TABLES FROM {database}").result_columns[0])
    if "order_tombstones" in tables:
        tombstones = [
            {"order_id": o.order_id, "deleted_at": NOW - timedelta(minutes=1), "version": 3}
            for o in orders
            if o.deleted
        ]
        insert_rows(client, database, "order_tombstones", tombstones)
    # One check of the pipeline: the freshness panels read it through the views.
    client.command(
        f"INSERT INTO {database}.pipeline_watermark (checked_at, watermark) "
        "VALUES (now64(6) - INTERVAL 2 SECOND, now64(6) - INTERVAL 3 SECOND)"
    )
    # The rows went into the table, not through the sink: the views' state is built from it.
    rebuild(client, database, partitions=1)


@pytest.fixture
def analytics(clickhouse_client: Any, clickhouse_database: str) -> list[Order]:
    migrate(clickhouse_client, clickhouse_database)
    orders = generate_orders(random.Random(7), 300)
    load_orders(clickhouse_client, clickhouse_database, orders)
    return orders


def run_clickhouse(client: Any, database: str, query: PanelQuery) -> tuple[list[str], list[tuple[Any, ...]]]:
    sql = render_clickhouse(query.text, database=database, time_from=TIME_FROM, time_to=TIME_TO)
    result = client.query(sql)
    return list(result.column_names), [tuple(row) for row in result.result_rows]


def assert_panel_shape(query: PanelQuery, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    expected = EXPECTED_COLUMNS[(query.dashboard_uid, query.panel_id)]
    assert columns == expected, f"{query.key}: columns {columns}, expected {expected}"
    assert rows, f"{query.key}: no rows from generated data"
    if query.panel_type == "stat":
        assert len(rows) == 1, f"{query.key}: a stat panel needs one row, got {len(rows)}"
        assert all(isinstance(v, int | float | Decimal) for v in rows[0]), f"{query.key}: {rows[0]}"
    if query.format == "time_series":
        assert all(isinstance(row[0], datetime) for row in rows), f"{query.key}: first column is not a time"
        assert [row[0] for row in rows] == sorted(row[0] for row in rows), f"{query.key}: not time-ordered"


def test_clickhouse_panels_return_their_columns(
    clickhouse_client: Any, clickhouse_database: str, analytics: list[Order]
) -> None:
    queries = sql_panels("grafana-clickhouse-datasource")
    assert len(queries) >= 10
    for query in queries:
        columns, rows = run_clickhouse(clickhouse_client, clickhouse_database, query)
        assert_panel_shape(query, columns, rows)


def panel(dashboard_uid: str, title: str) -> PanelQuery:
    matches = [q for q in panel_queries() if q.dashboard_uid == dashboard_uid and q.panel_title == title]
    assert len(matches) == 1, f"{dashboard_uid}: no single panel titled {title!r}"
    return matches[0]


def test_sales_panels_count_only_active_orders(
    clickhouse_client: Any, clickhouse_database: str, analytics: list[Order]
) -> None:
    """The headline numbers equal the generated ground truth: deleted orders and superseded
    versions never count, cancelled and refunded orders earn no revenue."""
    active = [o for o in analytics if not o.deleted]
    first_day: date = TIME_FROM.date()
    paying = [o for o in active if o.status not in NOT_REVENUE and o.created_at.date() >= first_day]

    def value(title: str) -> Any:
        _, rows = run_clickhouse(clickhouse_client, clickhouse_database, panel("outbox-sales", title))
        return rows[0][0]

    assert value("Orders") == len(paying)
    assert value("Revenue") == sum((o.total for o in paying), Decimal("0"))
    assert value("Customers") == len({o.user_id for o in active})
    # The check was 3 s behind when written.
    assert 3 <= value("Data freshness (seconds behind commits)") < 60

    _, status_rows = run_clickhouse(
        clickhouse_client, clickhouse_database, panel("outbox-sales", "Order status distribution")
    )
    expected_status: dict[str, int] = {}
    for order in active:
        expected_status[order.status] = expected_status.get(order.status, 0) + 1
    assert dict(status_rows) == expected_status

    _, counts = run_clickhouse(
        clickhouse_client, clickhouse_database, panel("outbox-pipeline-health", "Orders in ClickHouse")
    )
    assert counts == [(len(active), len(analytics) - len(active))]


# --- MySQL (MariaDB test database) --------------------------------------------------------------


def make_event(index: int, status: str, created: datetime, published: datetime | None) -> OutboxEvent:
    return OutboxEvent(
        event_type="OrderCreated",
        aggregate_type="order",
        aggregate_id=str(index),
        aggregate_version=1,
        occurred_at=created,
        payload={"order_id": index},
        status=status,
        published_at=published,
    )


@pytest.mark.django_db
def test_mysql_panels_return_their_columns() -> None:
    now = timezone.now().replace(microsecond=0)
    pending, failed, published = 7, 2, 25
    events = [make_event(i, OutboxStatus.PENDING, now, None) for i in range(pending)]
    events += [make_event(100 + i, OutboxStatus.FAILED, now, None) for i in range(failed)]
    events += [
        make_event(200 + i, OutboxStatus.PUBLISHED, now, now - timedelta(minutes=i % 5))
        for i in range(published)
    ]
    OutboxEvent.objects.bulk_create(events)
    # created_at is auto_now_add: age the oldest pending row on purpose to check the age panel.
    oldest = OutboxEvent.objects.filter(status=OutboxStatus.PENDING).order_by("id").first()
    assert oldest is not None
    OutboxEvent.objects.filter(pk=oldest.pk).update(created_at=now - timedelta(seconds=90))

    queries = sql_panels("mysql")
    assert len(queries) >= 4
    results: dict[str, list[tuple[Any, ...]]] = {}
    with connection.cursor() as cursor:
        # Grafana's MySQL datasource runs its sessions in UTC; Django stores UTC datetimes.
        cursor.execute("SET time_zone = '+00:00'")
        for query in queries:
            cursor.execute(render_mysql(query.text, time_from=TIME_FROM, time_to=TIME_TO))
            columns = [c[0] for c in cursor.description]
            rows = [tuple(r) for r in cursor.fetchall()]
            expected = EXPECTED_COLUMNS[(query.dashboard_uid, query.panel_id)]
            assert columns == expected, f"{query.key}: columns {columns}, expected {expected}"
            assert rows, f"{query.key}: no rows"
            if query.format == "time_series":
                assert all(isinstance(row[0], int) and row[0] > 0 for row in rows), query.key
            results[query.panel_title] = rows

    assert results["Outbox pending"] == [(pending,)]
    assert results["Outbox parked (failed)"] == [(failed,)]
    age = results["Oldest pending event age"][0][0]
    assert 90 <= age < 90 + 120, f"oldest pending age {age}s"
    assert sum(row[1] for row in results["Relay throughput (events published per minute)"]) == published
