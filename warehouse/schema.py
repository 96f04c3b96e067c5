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
    for statement in statements:
        client.command(statement)
    return len(statements)
