"""The chDB gateway speaks enough of ClickHouse's HTTP interface for clickhouse-connect: queries,
commands, inserts (every compression the client negotiates), errors with ClickHouse's codes, and
the database parameter. It runs as a subprocess: the test process may own a chDB engine already.
The request steps (body framing, routing, error mapping) are also checked on their own."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from email.message import Message
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from warehouse.chdb_gateway import GatewayError, engine_error_reply, read_body, run_request


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


# --- the request steps, without a server ------------------------------------------------------


class RecordingEngine:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def execute(self, sql: str, *, database: str | None, output_format: str) -> bytes:
        self.calls.append(("execute", sql, database, output_format))
        return b"result"

    def insert(self, target: str, data_format: str, data: bytes, *, database: str | None) -> None:
        self.calls.append(("insert", target, data_format, data, database))


def test_a_chunked_gzip_body_is_read_whole() -> None:
    payload = gzip.compress(b"SELECT 1")
    framed = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (payload[:5], payload[5:]))
    headers = Message()
    headers["Transfer-Encoding"] = "chunked"
    headers["Content-Encoding"] = "gzip"
    assert read_body(headers, io.BytesIO(framed + b"0\r\n\r\n")) == b"SELECT 1"


def test_insert_data_after_the_statement_in_the_body_goes_to_the_engine_insert() -> None:
    engine = RecordingEngine()
    body = b"INSERT INTO shop.t (x) FORMAT Native\n\x01\x02"
    assert run_request(engine, {"database": "shop"}, body) == b""  # type: ignore[arg-type]
    assert engine.calls == [("insert", "shop.t (x)", "Native", b"\x01\x02", "shop")]


def test_a_query_parameter_and_a_body_are_one_statement() -> None:
    engine = RecordingEngine()
    params = {"query": "SELECT", "default_format": "JSON"}
    assert run_request(engine, params, b"1") == b"result"  # type: ignore[arg-type]
    assert engine.calls == [("execute", "SELECT\n1", None, "JSON")]
    with pytest.raises(GatewayError) as refused:
        run_request(engine, {}, b"  ")  # type: ignore[arg-type]
    assert refused.value.status == 400


def test_engine_errors_keep_their_clickhouse_code() -> None:
    status, body, headers = engine_error_reply(RuntimeError("Code: 60. DB::Exception: UNKNOWN_TABLE"))
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    assert body.endswith(b"UNKNOWN_TABLE\n")
    assert engine_error_reply(RuntimeError("boom"))[0] == 500
