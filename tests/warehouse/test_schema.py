"""The schema loader: the DDL comes from the installed package, one statement per `;` line end,
for a database whose name is checked before it is put into SQL."""

from __future__ import annotations

import pytest

from warehouse.schema import schema_sql, schema_statements


def test_the_schema_is_package_data_with_a_database_placeholder() -> None:
    assert "CREATE TABLE IF NOT EXISTS {database}.orders_analytics" in schema_sql()


def test_statements_name_the_database_and_carry_no_comments() -> None:
    statements = schema_statements("shop")
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS shop"
    assert all("{database}" not in s and "{fsync}" not in s and not s.endswith(";") for s in statements)
    assert not any(line.lstrip().startswith("--") for s in statements for line in s.splitlines())


def test_a_database_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid ClickHouse database name"):
        schema_statements("analytics; DROP TABLE x")
