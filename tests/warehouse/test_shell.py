"""The SQL shell's own steps; `make clickhouse-shell` against a gateway is in
tests/ops/test_clickhouse_shell.py."""

from __future__ import annotations

from pathlib import Path

from warehouse import shell
from warehouse.client import redacted
from warehouse.gateway_credential import PASSWORD_FILE_NAME


def test_statements_split_on_semicolons_outside_quotes() -> None:
    text = "SELECT 'a;b'; SELECT `x;y` FROM t;\n\n ; SELECT 3"
    assert list(shell.statements(text)) == ["SELECT 'a;b'", "SELECT `x;y` FROM t", "SELECT 3"]


def test_a_chdb_url_means_the_local_gateway_with_its_credential(tmp_path: Path) -> None:
    env = {"CLICKHOUSE_URL": "chdb:///var/chdb", "VAR_DIR": str(tmp_path)}
    url = shell.server_url(env)
    password = (tmp_path / PASSWORD_FILE_NAME).read_text().strip()
    assert url == f"http://default:{password}@127.0.0.1:8123"
    assert redacted(url) == "http://default:***@127.0.0.1:8123"
    assert shell.server_url({**env, "CLICKHOUSE_HTTP_PORT": "9000"}).endswith("@127.0.0.1:9000")
    assert shell.server_url({"CLICKHOUSE_URL": "http://h:8123"}) == "http://h:8123"
