"""The analytics schema: `schema.sql`, shipped inside this package, applied idempotently to a
ClickHouse server or to chDB. The file is read as package data, so an installed wheel migrates
without a checkout of the repository."""

from __future__ import annotations

import re
from importlib.resources import files

import environment
from warehouse.client import ClickHouseClient, check_identifier


def schema_sql() -> str:
    """The DDL with its `{database}` and `{fsync}` placeholders."""
    return files("warehouse").joinpath("schema.sql").read_text(encoding="utf-8")


def schema_statements(
    database: str, *, fsync_after_insert: bool = environment.CLICKHOUSE_FSYNC_AFTER_INSERT
) -> list[str]:
    """The DDL statements of the schema for `database`, comments stripped; `fsync_after_insert`
    says whether the sink's tables sync every insert to disk before it returns."""
    text = schema_sql().replace("{database}", check_identifier(database))
    text = text.replace("{fsync}", "1" if fsync_after_insert else "0")
    statements = []
    for chunk in re.split(r";[ \t]*(?:\n|$)", text):
        code = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--"))
        if code.strip():
            statements.append(code.strip())
    return statements


def migrate(
    client: ClickHouseClient,
    database: str,
    *,
    fsync_after_insert: bool = environment.CLICKHOUSE_FSYNC_AFTER_INSERT,
) -> int:
    """Applies the schema idempotently; returns the number of statements run."""
    statements = schema_statements(database, fsync_after_insert=fsync_after_insert)
    _drop_refreshable_views(client, check_identifier(database))
    for statement in statements:
        client.command(statement)
    _start_view_epochs(client, check_identifier(database))
    return len(statements)


def _start_view_epochs(client: ClickHouseClient, database: str) -> None:
    """A new database starts the incremental views at epoch 1, empty. One that has orders but no
    epoch (migrated before the incremental views) gets none here: its state is built from
    orders_analytics by the sink when it starts, or by `python -m consumers reconcile --rebuild`."""
    epochs = client.query(f"SELECT count() FROM {database}.view_epochs").result_rows[0][0]
    if int(epochs):
        return
    orders = client.query(
        f"SELECT count() FROM (SELECT 1 FROM {database}.orders_analytics LIMIT 1)"
    ).result_rows[0][0]
    if not int(orders):
        client.command(f"INSERT INTO {database}.view_epochs (epoch, status, token) VALUES (1, 1, 'new')")


CONTRACT_VIEWS = (
    "daily_sales_mv",
    "hourly_sales_mv",
    "order_status_mv",
    "user_analytics_mv",
    "top_products_mv",
)


def _drop_refreshable_views(client: ClickHouseClient, database: str) -> None:
    """A database migrated before the views became incremental has them as refreshable
    materialized views, which CREATE OR REPLACE VIEW cannot replace: they go first. Their state is
    built from orders_analytics by the sink (consumers/views.py) when it finds no epoch."""
    names = ", ".join(f"'{name}'" for name in CONTRACT_VIEWS)
    found = client.query(
        f"SELECT name FROM system.tables WHERE database = '{database}' "
        f"AND name IN ({names}) AND engine = 'MaterializedView'"
    ).result_rows
    for (name,) in found:
        client.command(f"DROP TABLE {database}.{name} SYNC")
