"""The ClickHouse schema on real chDB: idempotent migration, TTL of soft-deleted orders, and no
resurrection of a deleted order once TTL removed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from consumers.sink import ClickHouseWriter
from consumers.transformer import transform
from contract.events import OrderItem, decode_envelope
from contract.rows import ORDER_COLUMNS, AnalyticsRow, clickhouse_line
from tests.consumers.factories import (
    VIEWS,
    actual_views,
    base_order,
    expected_views,
    history,
    kafka_value,
)
from warehouse.schema import migrate


def rows_of(events: list[dict[str, Any]]) -> list[Any]:
    return [transform(decode_envelope(kafka_value(event))) for event in events]


def stored_versions(client: Any, database: str, order_id: int) -> list[int]:
    """Physically stored versions (no FINAL): what TTL has or has not removed."""
    result = client.query(
        f"SELECT version FROM {database}.orders_analytics WHERE order_id = {order_id} ORDER BY version"
    )
    return [row[0] for row in result.result_rows]


def no_rows_in_any_view(client: Any, database: str, suffix: str) -> bool:
    return all(rows == {} for rows in actual_views(client, database, suffix).values())


def test_migration_is_idempotent_and_creates_every_contract_view(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    first = migrate(clickhouse_client, clickhouse_database)
    second = migrate(clickhouse_client, clickhouse_database)
    assert first == second > 0
    tables = {
        row[0] for row in clickhouse_client.query(f"SHOW TABLES FROM {clickhouse_database}").result_rows
    }
    expected = {"orders_analytics", "order_tombstones", "active_orders"}
    expected |= {f"{view}_mv" for view in VIEWS} | {f"{view}_live" for view in VIEWS}
    assert expected <= tables


def test_ttl_removes_an_order_deleted_8_days_ago_and_keeps_one_deleted_6_days_ago(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    migrate(clickhouse_client, clickhouse_database)
    writer = ClickHouseWriter(clickhouse_client, clickhouse_database)
    now = datetime.now(UTC)
    old = history(base_order(1, user_id=1), ["PAID"], now - timedelta(days=8))
    recent = history(base_order(2, user_id=2), ["PAID"], now - timedelta(days=6))
    alive = history(base_order(3, user_id=3), ["PAID"], None)
    events = old + recent + alive
    # One insert per event: every version in its own part, as separate sink batches leave them.
    for row in rows_of(events):
        writer.write([row])

    clickhouse_client.command(f"OPTIMIZE TABLE {clickhouse_database}.orders_analytics FINAL")

    assert stored_versions(clickhouse_client, clickhouse_database, 1) == []
    assert stored_versions(clickhouse_client, clickhouse_database, 2) == [3]
    assert stored_versions(clickhouse_client, clickhouse_database, 3) == [2]
    expected = expected_views(events)
    assert expected["order_status"] == {"PAID": (1, base_order(3).total_amount)}
    for suffix in ("_live", "_mv"):
        assert actual_views(clickhouse_client, clickhouse_database, suffix) == expected


def test_a_replay_cannot_bring_back_an_order_after_ttl_removed_it(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    migrate(clickhouse_client, clickhouse_database)
    writer = ClickHouseWriter(clickhouse_client, clickhouse_database)
    events = history(base_order(1), ["PAID", "SHIPPED"], datetime.now(UTC) - timedelta(days=9))
    writer.write(rows_of(events))
    clickhouse_client.command(f"OPTIMIZE TABLE {clickhouse_database}.orders_analytics FINAL")
    assert stored_versions(clickhouse_client, clickhouse_database, 1) == []

    # The whole history again, oldest first and one by one, as a replay from the earliest offset.
    for row in rows_of(events):
        writer.write([row])
    clickhouse_client.command(f"OPTIMIZE TABLE {clickhouse_database}.orders_analytics FINAL")

    assert stored_versions(clickhouse_client, clickhouse_database, 1) == []
    for suffix in ("_live", "_mv"):
        assert actual_views(clickhouse_client, clickhouse_database, suffix) == expected_views(events)
        assert all(
            rows == {} for rows in actual_views(clickhouse_client, clickhouse_database, suffix).values()
        )


def test_views_exclude_a_deleted_order_even_if_an_older_version_outlives_its_delete_row(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    """A TTL merge can drop the delete row while an older version sits in another part; the
    tombstone keeps the order out of every view."""
    migrate(clickhouse_client, clickhouse_database)
    writer = ClickHouseWriter(clickhouse_client, clickhouse_database)
    _, paid, deleted = history(base_order(1), ["PAID"], datetime.now(UTC) - timedelta(days=8))
    writer.write(rows_of([deleted]))
    clickhouse_client.command(f"OPTIMIZE TABLE {clickhouse_database}.orders_analytics FINAL")
    # Bypass the writer's filter: the older version lands in a part of its own, as it could have.
    row = rows_of([paid])[0]
    clickhouse_client.raw_insert(
        f"{clickhouse_database}.orders_analytics",
        ORDER_COLUMNS,
        clickhouse_line(row),
        fmt="JSONCompactEachRow",
    )
    assert stored_versions(clickhouse_client, clickhouse_database, 1) == [2]
    for suffix in ("_live", "_mv"):
        assert all(
            rows == {} for rows in actual_views(clickhouse_client, clickhouse_database, suffix).values()
        )


def test_the_management_command_applies_the_same_schema(
    clickhouse_client: Any, clickhouse_database: str, chdb_dir: Any
) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("clickhouse_migrate", url=f"chdb://{chdb_dir}", database=clickhouse_database, stdout=out)
    assert f"to {clickhouse_database}" in out.getvalue()
    shown = clickhouse_client.query(f"SHOW TABLES FROM {clickhouse_database}").result_rows
    assert {"orders_analytics", "daily_sales_mv", "user_analytics_mv"} <= {row[0] for row in shown}


def test_the_tombstone_guard_drops_only_older_rows_of_deleted_orders_in_a_range(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    """A tombstone of an order next to the batch's (22, deleted, not in the batch) and the batch's
    own (20, 24) stop only their own orders' older rows."""
    migrate(clickhouse_client, clickhouse_database)
    writer = ClickHouseWriter(clickhouse_client, clickhouse_database)
    deleted_at = datetime.now(UTC) - timedelta(days=1)
    # 20 and 24 are deleted (tombstones at version 2); 22 is in their range but outside the batch.
    writer.write(
        rows_of([*history(base_order(20), [], deleted_at), *history(base_order(24), [], deleted_at)])
    )
    writer.write(rows_of(history(base_order(22), [], deleted_at)))

    replay = [*history(base_order(20), [], None), *history(base_order(21), [], None)]
    replay += history(base_order(23), [], None) + history(base_order(24), [], None)
    writer.write(rows_of(replay))

    assert [stored_versions(clickhouse_client, clickhouse_database, n) for n in (20, 21, 23, 24)] == [
        [2],  # the replayed version 1 of a deleted order is dropped
        [1],
        [1],
        [2],
    ]


def test_rows_read_back_from_clickhouse_exactly_as_the_sink_wrote_them(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    """The sink writes JSON text: quotes, backslashes, non-ASCII text, microseconds, decimals,
    several items and a delete time must all arrive unchanged; a delete row stores nothing but
    its id, day, version and delete time, whatever details it was built with."""
    migrate(clickhouse_client, clickhouse_database)
    # Relative to today, so the delete stays inside the 7-day TTL on whatever day this runs: a
    # fixed date aged past it and the sink rightly purged the row. The times still cross a
    # midnight and carry odd microseconds.
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    created = midnight - timedelta(microseconds=876544)  # 23:59:59.123456 the day before
    deleted = midnight + timedelta(seconds=1, microseconds=7)
    items = [
        OrderItem(product_id=3, sku='S"1', product_name="Tasse \\ “Ø” 🍵", quantity=2,
                  unit_price="10.05", line_total="20.10"),
        OrderItem(product_id=9, sku="S-9", product_name="Plate", quantity=1,
                  unit_price="0.99", line_total="0.99"),
    ]  # fmt: skip
    details: dict[str, Any] = dict(
        user_id=5, user_email="zoë+'x'@example.com", order_date=created.date(), total_amount="21.09",
        items_count=3, status="CANCELLED", payment_method="PAYPAL", payment_status="CANCELLED",
        created_at=created, items=items,
    )  # fmt: skip
    row = AnalyticsRow(
        schema_version=1, order_id=77, version=3, event_type="OrderStatusChanged", deleted_at=None,
        is_deleted=False, **details,
    )  # fmt: skip
    delete_row = AnalyticsRow(
        schema_version=1, order_id=78, version=4, event_type="OrderDeleted", deleted_at=deleted,
        is_deleted=True, **details,
    )  # fmt: skip
    ClickHouseWriter(clickhouse_client, clickhouse_database).write([row, delete_row])

    stored = clickhouse_client.query(
        f"SELECT {', '.join(ORDER_COLUMNS)} FROM {clickhouse_database}.orders_analytics ORDER BY order_id"
    ).result_rows
    assert len(stored) == 2
    got = [dict(zip(ORDER_COLUMNS, values, strict=True)) for values in stored]
    for one in got:
        for name in ("created_at", "deleted_at"):  # compared as UTC wall-clock times
            value = one[name]
            one[name] = value.astimezone(UTC).replace(tzinfo=None) if value and value.tzinfo else value
    assert got[0] == {
        "order_id": 77, "user_id": 5, "user_email": "zoë+'x'@example.com", "order_date": created.date(),
        "total_amount": Decimal("21.09"), "items_count": 3, "status": "CANCELLED",
        "payment_method": "PAYPAL", "payment_status": "CANCELLED",
        "created_at": created.replace(tzinfo=None), "version": 3, "event_type": "OrderStatusChanged",
        "deleted_at": None, "is_deleted": 0, "item_product_ids": [3, 9],
        "item_skus": ['S"1', "S-9"], "item_names": ["Tasse \\ “Ø” 🍵", "Plate"],
        "item_quantities": [2, 1], "item_line_totals": [Decimal("20.10"), Decimal("0.99")],
    }  # fmt: skip
    assert got[1] == {
        "order_id": 78, "user_id": 0, "user_email": "", "order_date": created.date(),
        "total_amount": Decimal("0.00"), "items_count": 0, "status": "", "payment_method": "",
        "payment_status": "", "created_at": datetime(1970, 1, 1), "version": 4,
        "event_type": "OrderDeleted", "deleted_at": deleted.replace(tzinfo=None), "is_deleted": 1,
        "item_product_ids": [], "item_skus": [], "item_names": [], "item_quantities": [],
        "item_line_totals": [],
    }  # fmt: skip
