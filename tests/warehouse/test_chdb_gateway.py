"""The chDB gateway speaks enough of ClickHouse's HTTP interface for clickhouse-connect: queries,
commands, inserts (every compression the client negotiates), errors with ClickHouse's codes, and
the database parameter. It runs as a subprocess: the test process may own a chDB engine already."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gateway_command(data_dir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "warehouse.chdb_gateway", "--data-dir", str(data_dir), "--port", str(port)]


def _wait_for_ping(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gateway exited early with code {process.returncode}")
        try:
            if urllib.request.urlopen(f"{url}/ping", timeout=1).read() == b"Ok.\n":
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"gateway at {url} did not answer /ping within {timeout}s")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        _gateway_command(tmp_path / "chdb", port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_ping(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


COLUMNS = ["id", "name", "amount", "at", "deleted_at"]


def _rows(start: int, count: int) -> list[list[object]]:
    created, deleted = dt.datetime(2026, 11, 1, 12), dt.datetime(2026, 11, 2)
    return [
        [i, f"order-{i}", Decimal("12.34"), created, None if i % 2 else deleted]
        for i in range(start, start + count)
    ]


@pytest.mark.parametrize("compress", [False, True, "gzip", "zstd"])
def test_clickhouse_connect_round_trip(gateway: str, compress: bool | str) -> None:
    client = clickhouse_connect.get_client(dsn=gateway, compress=compress)
    client.command("CREATE DATABASE IF NOT EXISTS shop")
    client.command(
        "CREATE TABLE shop.orders (id UInt64, name String, amount Decimal(12, 2), at DateTime64(3),"
        " deleted_at Nullable(DateTime)) ENGINE = ReplacingMergeTree ORDER BY id"
    )
    client.insert("shop.orders", _rows(0, 500), column_names=COLUMNS)
    client.insert("shop.orders", _rows(500, 500), column_names=COLUMNS)

    result = client.query("SELECT count(), sum(amount), countIf(deleted_at IS NULL) FROM shop.orders")
    assert result.result_rows == [(1000, Decimal("12340.00"), 500)]
    first = client.query("SELECT id, name, at FROM shop.orders ORDER BY id LIMIT 1").result_rows
    assert first == [(0, "order-0", dt.datetime(2026, 11, 1, 12, 0, 0))]


def test_database_parameter_and_plain_http(gateway: str) -> None:
    client = clickhouse_connect.get_client(dsn=gateway)
    client.command("CREATE DATABASE IF NOT EXISTS scoped")
    client.command("CREATE TABLE scoped.t (x UInt8) ENGINE = MergeTree ORDER BY x")
    client.insert("scoped.t", [[1], [2], [3]], column_names=["x"])

    scoped = clickhouse_connect.get_client(dsn=f"{gateway}/scoped")
    assert scoped.query("SELECT sum(x) FROM t").result_rows == [(6,)]

    # curl-style: the query in the URL, the default TabSeparated output.
    with urllib.request.urlopen(f"{gateway}/?query=SELECT%20count()%20FROM%20scoped.t") as response:
        assert response.read() == b"3\n"


def test_errors_carry_clickhouse_codes(gateway: str) -> None:
    client = clickhouse_connect.get_client(dsn=gateway)
    with pytest.raises(DatabaseError, match="UNKNOWN_TABLE"):
        client.query("SELECT * FROM no_such_table")
    with pytest.raises(DatabaseError, match="code: 62"):
        client.command("SELEC 1")
    # The gateway keeps serving after errors.
    assert client.query("SELECT 1 + 1").result_rows == [(2,)]


def test_second_gateway_on_same_directory_fails_clearly(gateway: str, tmp_path: Path) -> None:
    # chDB allows one owner per data directory: a second owner must refuse with a message.
    result = subprocess.run(
        _gateway_command(tmp_path / "chdb", _free_port()),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert b"cannot open chDB" in result.stderr
