"""The chDB gateway speaks enough of ClickHouse's HTTP interface for clickhouse-connect: queries,
commands, inserts (every compression the client negotiates), errors with ClickHouse's codes, and
the database parameter. It runs as a subprocess: the test process may own a chDB engine already.
The request steps (body framing, routing, error mapping) are also checked on their own."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from email.message import Message
from pathlib import Path
from urllib.parse import quote

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from warehouse.chdb_gateway import Access, engine_error_reply, read_body
from warehouse.gateway_credential import PASSWORD_FILE_NAME


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


@dataclass(frozen=True)
class Gateway:
    """A running gateway: `url` without a credential, `dsn` with the one it keeps in `var_dir`."""

    url: str
    var_dir: Path

    @property
    def password(self) -> str:
        return (self.var_dir / PASSWORD_FILE_NAME).read_text().strip()

    @property
    def dsn(self) -> str:
        return self.url.replace("http://", f"http://default:{self.password}@", 1)


@contextmanager
def running_gateway(var_dir: Path, **env: str) -> Iterator[Gateway]:
    port = _free_port()
    process = subprocess.Popen(
        _gateway_command(var_dir / "chdb", port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "VAR_DIR": str(var_dir), **env},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_ping(url, process)
        yield Gateway(url, var_dir)
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with running_gateway(tmp_path) as running:
        yield running


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _http(
    url: str, *, sql: str | None = None, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """(status, body) of one request: `sql` in the query parameter, POST when there is `data`."""
    target = f"{url}/?query={quote(sql)}" if sql is not None else f"{url}/"
    request = urllib.request.Request(target, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


COLUMNS = ["id", "name", "amount", "at", "deleted_at"]


def _rows(start: int, count: int) -> list[list[object]]:
    created, deleted = dt.datetime(2026, 11, 1, 12), dt.datetime(2026, 11, 2)
    return [
        [i, f"order-{i}", Decimal("12.34"), created, None if i % 2 else deleted]
        for i in range(start, start + count)
    ]


@pytest.mark.parametrize("compress", [False, True, "gzip", "zstd"])
def test_clickhouse_connect_round_trip(gateway: Gateway, compress: bool | str) -> None:
    client = clickhouse_connect.get_client(dsn=gateway.dsn, compress=compress)
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


def test_database_parameter_and_plain_http(gateway: Gateway) -> None:
    client = clickhouse_connect.get_client(dsn=gateway.dsn)
    client.command("CREATE DATABASE IF NOT EXISTS scoped")
    client.command("CREATE TABLE scoped.t (x UInt8) ENGINE = MergeTree ORDER BY x")
    client.insert("scoped.t", [[1], [2], [3]], column_names=["x"])

    scoped = clickhouse_connect.get_client(dsn=f"{gateway.dsn}/scoped")
    assert scoped.query("SELECT sum(x) FROM t").result_rows == [(6,)]

    # curl-style: the query in the URL, the default TabSeparated output.
    auth = _basic("default", gateway.password)
    assert _http(gateway.url, sql="SELECT count() FROM scoped.t", headers=auth) == (200, "3\n")
    # A statement in the query parameter goes on in the body, as on a ClickHouse server.
    assert _http(gateway.url, sql="SELECT", data=b"40 + 2", headers=auth) == (200, "42\n")
    status, body = _http(gateway.url, data=b"  ", headers=auth)
    assert status == 400 and "empty query" in body


def test_errors_carry_clickhouse_codes(gateway: Gateway) -> None:
    client = clickhouse_connect.get_client(dsn=gateway.dsn)
    with pytest.raises(DatabaseError, match="UNKNOWN_TABLE"):
        client.query("SELECT * FROM no_such_table")
    with pytest.raises(DatabaseError, match="code: 62"):
        client.command("SELEC 1")
    # The gateway keeps serving after errors.
    assert client.query("SELECT 1 + 1").result_rows == [(2,)]


def test_second_gateway_on_same_directory_fails_clearly(gateway: Gateway, tmp_path: Path) -> None:
    # chDB allows one owner per data directory: a second owner must refuse with a message.
    result = subprocess.run(
        _gateway_command(tmp_path / "chdb", _free_port()),
        capture_output=True,
        timeout=60,
        env={**os.environ, "VAR_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert b"cannot open chDB" in result.stderr


# --- the request steps, without a server ------------------------------------------------------


def test_a_chunked_gzip_body_is_read_whole() -> None:
    payload = gzip.compress(b"SELECT 1")
    framed = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (payload[:5], payload[5:]))
    headers = Message()
    headers["Transfer-Encoding"] = "chunked"
    headers["Content-Encoding"] = "gzip"
    assert read_body(headers, io.BytesIO(framed + b"0\r\n\r\n")) == b"SELECT 1"


def test_engine_errors_keep_their_clickhouse_code() -> None:
    status, body, headers = engine_error_reply(RuntimeError("Code: 60. DB::Exception: UNKNOWN_TABLE"))
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    assert body.endswith(b"UNKNOWN_TABLE\n")
    assert engine_error_reply(RuntimeError("boom"))[0] == 500


# --- who may use it, and what a statement may do ----------------------------------------------


def test_requests_without_the_credential_are_refused_with_401(gateway: Gateway) -> None:
    for sql, data in (("SELECT 1", None), (None, b"CREATE DATABASE anonymous")):
        status, body = _http(gateway.url, sql=sql, data=data)
        assert status == 401
        assert "Code: 516" in body and "Authentication required" in body and "X-ClickHouse-Key" in body
    # Health checks stay open; nothing else does.
    assert urllib.request.urlopen(f"{gateway.url}/ping", timeout=5).read() == b"Ok.\n"
    assert _http(f"{gateway.url}/no/such/path")[0] == 401
    with pytest.raises(DatabaseError, match="516"):
        clickhouse_connect.get_client(dsn=gateway.url)
    client = clickhouse_connect.get_client(dsn=gateway.dsn)
    assert client.query("EXISTS DATABASE anonymous").result_rows == [(0,)]


@pytest.mark.parametrize("way", ["basic", "headers", "parameters"])
def test_every_way_clickhouse_sends_a_credential_is_checked(gateway: Gateway, way: str) -> None:
    def ask(user: str, password: str) -> tuple[int, str]:
        if way == "basic":
            return _http(gateway.url, sql="SELECT 7", headers=_basic(user, password))
        if way == "headers":
            headers = {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}
            return _http(gateway.url, sql="SELECT 7", headers=headers)
        target = f"{gateway.url}/?user={quote(user)}&password={quote(password)}&query=SELECT%207"
        try:
            with urllib.request.urlopen(target, timeout=30) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode()

    assert ask("default", gateway.password) == (200, "7\n")
    for user, password in (("default", "wrong"), ("default", ""), ("admin", gateway.password)):
        status, body = ask(user, password)
        assert status == 401, (user, password)
        assert "Authentication failed" in body and "AUTHENTICATION_FAILED" in body


def test_get_requests_are_read_only(gateway: Gateway) -> None:
    auth = _basic("default", gateway.password)
    assert _http(gateway.url, data=b"CREATE TABLE kept (x UInt8) ENGINE = Memory", headers=auth)[0] == 200
    for write in (
        "CREATE TABLE made_by_get (x UInt8) ENGINE = Memory",
        "INSERT INTO kept VALUES (1)",
        "DROP TABLE kept",
        "ALTER TABLE kept DELETE WHERE 1",
        "SET max_threads = 1",
    ):
        status, body = _http(gateway.url, sql=write, headers=auth)
        assert status == 403, write
        assert "readonly mode" in body and "over GET" in body and "READONLY" in body
    for read in ("SELECT count() FROM kept", "SHOW TABLES", "DESCRIBE TABLE kept", "EXISTS TABLE kept"):
        assert _http(gateway.url, sql=read, headers=auth)[0] == 200, read
    assert _http(gateway.url, sql="SHOW TABLES", headers=auth)[1] == "kept\n"
    assert _http(gateway.url, sql="SELECT count() FROM kept", headers=auth)[1] == "0\n"


def test_foreign_host_and_origin_are_refused(gateway: Gateway) -> None:
    auth = _basic("default", gateway.password)
    port = gateway.url.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "127.0.0.1:1", "localhost", f"127.0.0.1.evil.example:{port}"):
        status, body = _http(gateway.url, sql="SELECT 1", headers={**auth, "Host": host})
        assert (status, body) == (403, f"refused: Host {host!r} is not this gateway\n")
    for origin in ("http://evil.example", "null", f"http://localhost:{port}"):
        status, body = _http(gateway.url, data=b"SELECT 1", headers={**auth, "Origin": origin})
        assert status == 403 and "cross-origin" in body, origin
    cross_site = {**auth, "Sec-Fetch-Site": "cross-site"}
    assert _http(gateway.url, sql="SELECT 1", headers=cross_site)[0] == 403

    same_origin = {**auth, "Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    assert _http(gateway.url, data=b"SELECT 1", headers=same_origin) == (200, "1\n")
    assert _http(gateway.url, sql="SELECT 2", headers={**auth, "Host": f"localhost:{port}"}) == (200, "2\n")


def test_configured_host_names_are_accepted_too() -> None:
    access = Access.for_port("pw", 8123, ["ch.internal", "proxy.example:443"])
    assert {
        "127.0.0.1:8123",
        "localhost:8123",
        "[::1]:8123",
        "ch.internal:8123",
        "proxy.example:443",
    } <= access.hosts
    assert "ch.internal" not in access.hosts and "evil.example:8123" not in access.hosts


OUTSIDE_THE_DATABASE = [
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT file('/etc/hostname')",
    "SELECT * FROM url('http://127.0.0.1:1/x', 'CSV', 'x UInt8')",
    "SELECT * FROM s3('http://127.0.0.1:1/bucket/x.csv')",
    "SELECT * FROM remote('127.0.0.1:1', system.one)",
    "SELECT * FROM mysql('127.0.0.1:3306', 'ecommerce', 'auth_user', 'ecommerce', 'ecommerce')",
    "SELECT * FROM view(SELECT * FROM file('/etc/hostname', 'LineAsString'))",
    "WITH (SELECT count() FROM postgresql('h:1', 'd', 't', 'u', 'p')) AS n SELECT n",
    "SELECT * FROM numbers(1) UNION ALL SELECT * FROM executable('x.sh', 'TSV', 'n UInt64')",
    "INSERT INTO FUNCTION file('{dir}/written.csv', 'CSV', 'x UInt8') SELECT 1",
    "SELECT 1 INTO OUTFILE '{dir}/written.tsv'",
    "INSERT INTO plain FROM INFILE '/etc/hostname' FORMAT LineAsString",
    "CREATE TABLE on_disk (x String) ENGINE = File(CSV, '/etc/hostname')",
    "CREATE TABLE over_http (x String) ENGINE = URL('http://127.0.0.1:1/x', CSV)",
    "CREATE DATABASE host_files ENGINE = Filesystem('/etc')",
    "CREATE DICTIONARY d (id UInt64) PRIMARY KEY id SOURCE(FILE(path '/etc/x' format 'CSV'))"
    " LAYOUT(FLAT()) LIFETIME(0)",
    "BACKUP TABLE plain TO File('{dir}/backup')",
]


def test_statements_that_reach_outside_the_database_are_refused(gateway: Gateway, tmp_path: Path) -> None:
    client = clickhouse_connect.get_client(dsn=gateway.dsn)
    client.command("CREATE TABLE plain (line String) ENGINE = MergeTree ORDER BY line")
    for sql in OUTSIDE_THE_DATABASE:
        with pytest.raises(DatabaseError, match="497") as refused:
            client.command(sql.format(dir=tmp_path))
        assert "outside the database" in str(refused.value) or "a file of the gateway" in str(refused.value)
        assert "CHDB_GATEWAY_EXTERNAL_ACCESS=1" in str(refused.value)
    assert not list(tmp_path.glob("written*")) and not (tmp_path / "backup").exists()
    assert client.query("SHOW TABLES").result_rows == [("plain",)]

    # What the pipeline does still works: a plain SELECT and INSERT, local table functions.
    client.insert("plain", [["a"], ["b"]], column_names=["line"])
    client.command("INSERT INTO plain VALUES ('c'), ('d;e')")
    client.command("INSERT INTO plain SELECT toString(number) FROM numbers(3)")
    assert client.query("SELECT count() FROM plain").result_rows == [(7,)]
    assert client.query("SELECT line FROM plain WHERE line = 'd;e'").result_rows == [("d;e",)]


def test_one_request_runs_one_statement(gateway: Gateway) -> None:
    client = clickhouse_connect.get_client(dsn=gateway.dsn)
    client.command("CREATE TABLE kept (x UInt8) ENGINE = Memory")
    with pytest.raises(DatabaseError, match="Multi-statements are not allowed"):
        client.command("SELECT 1; DROP TABLE kept")
    # Inline INSERT data is data: what follows a ';' in it never runs as a statement.
    client.command("INSERT INTO kept VALUES (1); DROP TABLE kept")
    assert client.query("SELECT sum(x) FROM kept").result_rows == [(1,)]


def test_external_access_is_allowed_only_when_enabled(tmp_path: Path) -> None:
    readable = tmp_path / "lines.txt"
    readable.write_text("from a file\n")
    with running_gateway(tmp_path / "open", CHDB_GATEWAY_EXTERNAL_ACCESS="1") as open_gateway:
        client = clickhouse_connect.get_client(dsn=open_gateway.dsn)
        rows = client.query(f"SELECT * FROM file('{readable}', 'LineAsString')").result_rows
        assert rows == [("from a file",)]
        # Reads stay read-only over GET all the same.
        auth = _basic("default", open_gateway.password)
        assert _http(open_gateway.url, sql="CREATE DATABASE nope", headers=auth)[0] == 403


def test_the_password_file_is_created_private_and_kept_across_restarts(tmp_path: Path) -> None:
    password_file = tmp_path / PASSWORD_FILE_NAME
    assert not password_file.exists()
    with running_gateway(tmp_path) as first:
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = first.password
        assert len(password) >= 32
        clickhouse_connect.get_client(dsn=first.dsn).command("CREATE TABLE survives (x UInt8) ENGINE = Log")
    with running_gateway(tmp_path) as second:
        assert second.password == password
        client = clickhouse_connect.get_client(dsn=second.dsn)
        assert client.query("EXISTS TABLE survives").result_rows == [(1,)]

    # A credential file others may read is refused, not used.
    password_file.chmod(0o644)
    result = subprocess.run(
        _gateway_command(tmp_path / "chdb", _free_port()),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VAR_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "may be read by other users (mode 644)" in result.stderr
