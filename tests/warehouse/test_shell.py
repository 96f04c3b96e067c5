"""The SQL shell's own steps; `make clickhouse-shell` against a gateway is in
tests/ops/test_clickhouse_shell.py."""

from __future__ import annotations

from warehouse import shell


def test_statements_split_on_semicolons_outside_quotes() -> None:
    text = "SELECT 'a;b'; SELECT `x;y` FROM t;\n\n ; SELECT 3"
    assert list(shell.statements(text)) == ["SELECT 'a;b'", "SELECT `x;y` FROM t", "SELECT 3"]


def test_a_chdb_url_means_the_local_gateway() -> None:
    assert shell.server_url({"CLICKHOUSE_URL": "chdb:///var/chdb"}) == "http://127.0.0.1:8123"
    assert shell.server_url({"CLICKHOUSE_URL": "http://h:8123"}) == "http://h:8123"
