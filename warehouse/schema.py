"""The analytics schema: `schema.sql`, shipped inside this package, applied idempotently to a
ClickHouse server or to chDB. The file is read as package data, so an installed wheel migrates
without a checkout of the repository."""

from __future__ import annotations

import re
from importlib.resources import files

from warehouse.client import ClickHouseClient, check_identifier


def schema_sql() -> str:
    """The DDL with its `{database}` placeholder."""
    return files("warehouse").joinpath("schema.sql").read_text(encoding="utf-8")


def schema_statements(database: str) -> list[str]:
    """The DDL statements of the schema for `database`, comments stripped."""
    text = schema_sql().replace("{database}", check_identifier(database))
    statements = []
    for chunk in re.split(r";[ \t]*(?:\n|$)", text):
        code = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--"))
        if code.strip():
            statements.append(code.strip())
    return statements


def migrate(client: ClickHouseClient, database: str) -> int:
    """Applies the schema idempotently; returns the number of statements run."""
    statements = schema_statements(database)
    for statement in statements:
        client.command(statement)
    return len(statements)
