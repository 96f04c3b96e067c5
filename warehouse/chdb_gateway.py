"""A ClickHouse-compatible HTTP endpoint in front of in-process chDB.

chDB runs the real ClickHouse engine inside one process, and only one process may own a data
directory at a time. On the local stack this small server is that process: it owns `var/chdb` and
speaks the subset of ClickHouse's HTTP interface that clickhouse-connect (and curl) use, so every
other role — the sink, the analytics API, the pipeline checks — is an ordinary ClickHouse client
with `CLICKHOUSE_URL=http://127.0.0.1:8123`, exactly as against the ClickHouse server of the compose
stack.

Supported: `GET /ping`; queries in the `query` URL parameter and/or the request body; `INSERT …
FORMAT <fmt>` with the data in the body (any self-describing format, e.g. clickhouse-connect's
Native), plain or chunked, compressed with gzip, deflate, lz4 or zstd; the `database` and
`default_format` parameters. Other settings sent as URL parameters are accepted and ignored.

Binding to 127.0.0.1 does not keep out a web page the developer visits, so every request but
`/ping` must pass, in this order: a `Host` of this gateway (127.0.0.1, localhost or [::1] with its
port, or a name in CHDB_GATEWAY_ALLOWED_HOSTS) and no cross-origin `Origin` or `Sec-Fetch-Site`
(403); the credential of `warehouse.gateway_credential` as ClickHouse clients send it — HTTP Basic,
`X-ClickHouse-User`/`X-ClickHouse-Key`, or `user`/`password` parameters (401 otherwise); and the
SQL policy of `warehouse.gateway_policy` (GET is read-only; nothing reaches files, URLs or other
servers unless CHDB_GATEWAY_EXTERNAL_ACCESS=1).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import gzip
import logging
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

import environment
from warehouse.gateway_credential import (
    GATEWAY_USER,
    PASSWORD_FILE_NAME,
    CredentialError,
    gateway_password,
    password_file,
)
from warehouse.gateway_policy import PolicyError, SqlPolicy, Statement, sql_string

logger = logging.getLogger("warehouse.chdb_gateway")

# INSERT INTO db.table [(a, b)] FORMAT Fmt — its data follows: after a newline in the same body
# (ClickHouse's own convention), or as the whole body when the statement is the `query` parameter.
# These patterns only find where the data starts; what the statement is, the engine decides.
_INSERT_WITH_DATA = re.compile(rb"^\s*INSERT\s+INTO\s[^\n]*?\sFORMAT\s+\w+[ \t]*(?:\r?\n|$)", re.IGNORECASE)
# … and in SQL text, after VALUES or after FORMAT Fmt.
_INLINE_DATA = re.compile(r"^\s*INSERT\s+INTO\s.*?\s(?:VALUES|FORMAT\s+\w+[ \t]*(?:\r?\n)?)", re.I | re.S)
_FORMAT_SUFFIX = re.compile(r" FORMAT (?P<format>\w+)$")
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# ClickHouse answers these error codes with 4xx; everything else is a 500, as the server does.
_CLIENT_ERROR_CODES = {
    62: 400,  # SYNTAX_ERROR
    47: 400,  # UNKNOWN_IDENTIFIER
    60: 404,  # UNKNOWN_TABLE
    81: 404,  # UNKNOWN_DATABASE
    164: 403,  # READONLY
}
_TEXT = {"Content-Type": "text/plain; charset=UTF-8"}


class GatewayError(Exception):
    """A request the gateway refuses before it reaches the engine; `code` is ClickHouse's error
    code when there is one for the refusal."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in {"", "identity"}:
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        # A streamed body is a sequence of LZ4 frames, one per block.
        parts = []
        while body:
            decompressor = lz4.frame.LZ4FrameDecompressor()
            parts.append(decompressor.decompress(body))
            body = decompressor.unused_data
        return b"".join(parts)
    if encoding == "zstd":
        from backports import zstd  # shipped with clickhouse-connect for Python < 3.14

        return bytes(zstd.decompress(body))
    raise GatewayError(415, f"unsupported Content-Encoding: {encoding}")


class ChdbEngine:
    """The one chDB session of this process; queries run one at a time."""

    def __init__(self, data_dir: Path) -> None:
        from chdb import session

        data_dir.mkdir(parents=True, exist_ok=True)
        self._session: Any = session.Session(str(data_dir))  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._spool = Path(tempfile.mkdtemp(prefix="chdb-gateway-"))
        # The sink sends the same INSERT statement with every batch: parse it once.
        self._parse_cached = functools.lru_cache(maxsize=1024)(self._parse)

    def _query(self, sql: str, output_format: str) -> str:
        with self._lock:
            result = self._session.query(sql, output_format)
        return bytes(result.bytes()).decode() if result is not None else ""

    def parse(self, sql: str) -> Statement:
        # Short statements only in the cache: inline INSERT rows may be long and never repeat.
        return self._parse_cached(sql) if len(sql) <= 4096 else self._parse(sql)

    def _parse(self, sql: str) -> Statement:
        """`sql` as the engine parses it; a syntax error, or more than one statement, raises the
        engine's error. The text is handed over as a string literal, so nothing in it runs."""
        canonical = self._query(f"SELECT formatQuerySingleLine({sql_string(sql)})", "TabSeparatedRaw")
        canonical = canonical.rstrip("\n")
        # TabSeparated escapes newlines inside a row: one line of output is one node of the tree.
        tree = self._query(f"EXPLAIN AST {canonical}", "TabSeparated")
        return Statement.from_explain(canonical, tree.splitlines())

    def table_sources(self) -> list[str]:
        """The names of every table function and table or database engine the engine knows."""
        sql = (
            "SELECT name FROM system.table_functions UNION ALL SELECT name FROM system.table_engines"
            " UNION ALL SELECT name FROM system.database_engines"
        )
        return self._query(sql, "TabSeparatedRaw").split()

    def execute(self, sql: str, *, database: str | None, output_format: str) -> bytes:
        if database:
            if not _IDENTIFIER.match(database):
                raise GatewayError(400, f"invalid database name: {database!r}")
            sql = f"USE {database}; {sql}"
        with self._lock:
            result = self._session.query(sql, output_format)
        return bytes(result.bytes()) if result is not None else b""

    def insert(self, statement: Statement, data: bytes, *, database: str | None) -> None:
        """Runs an INSERT that carries data (`statement.carries_data`) with `data` as its rows.

        chDB takes SQL text only, so the data goes through a spool file read by file(): its format
        parser reads it, and nothing in it can become a statement of its own."""
        suffix = _FORMAT_SUFFIX.search(statement.canonical)
        if not statement.carries_data or suffix is None:
            raise GatewayError(400, f"not an INSERT that carries data: {statement.canonical}")
        data_format = suffix["format"]
        fd, name = tempfile.mkstemp(dir=self._spool, suffix=f".{data_format.lower()}")
        try:
            with os.fdopen(fd, "wb") as spool:
                spool.write(data)
            head = statement.canonical[: suffix.start()]
            sql = f"{head} SELECT * FROM file('{name}', '{data_format}')"
            self.execute(sql, database=database, output_format="TabSeparated")
        finally:
            os.unlink(name)

    def close(self) -> None:
        with self._lock:
            self._session.close()
        shutil.rmtree(self._spool, ignore_errors=True)


def read_body(headers: Message, rfile: BufferedIOBase) -> bytes:
    """The request body as sent: de-chunked or read to its Content-Length, then decompressed."""
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                rfile.readline()  # the blank line after the last chunk
                break
            chunks.append(rfile.read(size))
            rfile.readline()
        body = b"".join(chunks)
    else:
        length = int(headers.get("Content-Length") or 0)
        body = rfile.read(length) if length else b""
    return _decompress(body, headers.get("Content-Encoding", ""))


def run_request(
    engine: ChdbEngine, policy: SqlPolicy, params: dict[str, str], body: bytes, *, read_only: bool
) -> bytes:
    """One ClickHouse request: an INSERT that carries data becomes an engine insert; anything else
    is SQL text from the `query` parameter and/or the body, answered in `default_format`. Every
    statement is parsed by the engine and must pass the policy before it runs."""
    query = params.get("query", "")
    database = params.get("database") or None
    if query:
        insert, data = _INSERT_WITH_DATA.match(query.encode()), body
        header = query
    else:
        insert = _INSERT_WITH_DATA.match(body)
        data = body[insert.end() :] if insert else b""
        header = body[: insert.end()].decode() if insert else ""
    if insert and data:
        statement = engine.parse(header)
        policy.check(statement, read_only=read_only)
        engine.insert(statement, data, database=database)
        return b""
    sql = f"{query}\n{body.decode()}" if query and body else query or body.decode()
    if not sql.strip():
        raise GatewayError(400, "empty query: send it in the body or the `query` parameter")
    statement = engine.parse(sql)
    policy.check(statement, read_only=read_only)
    if statement.carries_data:
        # chDB would run whatever follows inline VALUES after a ';' as a statement of its own.
        inline = _INLINE_DATA.match(sql)
        if inline is None:
            raise GatewayError(400, "send INSERT data after VALUES, or after FORMAT <format> and a newline")
        data = sql[inline.end() :].encode()
        if data.strip():
            engine.insert(statement, data, database=database)
        return b""
    output_format = params.get("default_format") or "TabSeparated"
    return engine.execute(sql, database=database, output_format=output_format)


def result_headers(params: dict[str, str], query_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/octet-stream",
        "X-ClickHouse-Format": params.get("default_format") or "TabSeparated",
        "X-ClickHouse-Timezone": "UTC",
        "X-ClickHouse-Query-Id": query_id,
        "X-ClickHouse-Summary": '{"read_rows":"0","written_rows":"0"}',
    }


def engine_error_reply(exc: Exception) -> tuple[int, bytes, dict[str, str]]:
    """An error of the engine as ClickHouse reports it: its code in a header, 4xx or 500."""
    message = str(exc)
    match = _ERROR_CODE.search(message)
    code = int(match.group(1)) if match else 1000
    headers = {**_TEXT, "X-ClickHouse-Exception-Code": str(code)}
    return _CLIENT_ERROR_CODES.get(code, 500), f"{message}\n".encode(), headers


def refusal_reply(exc: GatewayError | PolicyError) -> tuple[int, bytes, dict[str, str]]:
    """A refusal of the gateway, with ClickHouse's code and wording when it has one."""
    if exc.code is None:
        return exc.status, f"{exc}\n".encode(), _TEXT
    body = f"Code: {exc.code}. DB::Exception: {exc}\n".encode()
    return exc.status, body, {**_TEXT, "X-ClickHouse-Exception-Code": str(exc.code)}


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class Access:
    """Who may send a request: one sent to this gateway by its name (a web page on another
    origin, or a DNS name rebound to 127.0.0.1, names another host), not from another origin,
    and carrying the gateway's credential."""

    password: str = field(repr=False)
    hosts: frozenset[str] = frozenset()

    @classmethod
    def for_port(cls, password: str, port: int, extra_hosts: list[str]) -> Access:
        names = [*LOOPBACK_NAMES, *extra_hosts]
        hosts = {f"{name}:{port}" for name in names} | {n for n in extra_hosts if ":" in n.lstrip("[")}
        if port == 80:
            hosts |= set(names)
        return cls(password, frozenset(host.lower() for host in hosts))

    def check(self, headers: Message, params: dict[str, str]) -> None:
        host = (headers.get("Host") or "").strip().lower()
        if host not in self.hosts:
            raise GatewayError(403, f"refused: Host {host or '(none)'!r} is not this gateway")
        origin = headers.get("Origin")
        if origin is not None and origin.strip().lower() not in {f"http://{host}", f"https://{host}"}:
            raise GatewayError(403, f"refused: cross-origin request from {origin!r}")
        if headers.get("Sec-Fetch-Site", "").lower() in {"cross-site", "same-site"}:
            raise GatewayError(403, "refused: a browser sent this request from another site")
        self._check_credential(headers, params)

    def _check_credential(self, headers: Message, params: dict[str, str]) -> None:
        sent = sent_credential(headers, params)
        if sent is None:
            raise GatewayError(
                401,
                f"Authentication required: send user {GATEWAY_USER} and the gateway's password "
                f"({PASSWORD_FILE_NAME} under VAR_DIR) as HTTP Basic auth, X-ClickHouse-User and "
                "X-ClickHouse-Key headers, or user and password parameters (AUTHENTICATION_FAILED)",
                code=516,
            )
        user, password = sent
        # Both compared in constant time, and both always compared.
        user_ok = secrets.compare_digest(user.encode(), GATEWAY_USER.encode())
        if not (secrets.compare_digest(password.encode(), self.password.encode()) and user_ok):
            raise GatewayError(
                401,
                f"{user}: Authentication failed: password is incorrect, or there is no user with "
                "such name (AUTHENTICATION_FAILED)",
                code=516,
            )


def sent_credential(headers: Message, params: dict[str, str]) -> tuple[str, str] | None:
    """(user, password) as a ClickHouse client sends them, or None when it sent none."""
    authorization = headers.get("Authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise GatewayError(401, "malformed Basic authorization header", code=516) from exc
        user, _, password = decoded.partition(":")
        return user, password
    if "X-ClickHouse-User" in headers or "X-ClickHouse-Key" in headers:
        return headers.get("X-ClickHouse-User") or GATEWAY_USER, headers.get("X-ClickHouse-Key", "")
    if "user" in params or "password" in params:
        return params.get("user") or GATEWAY_USER, params.get("password", "")
    return None


class GatewayHandler(BaseHTTPRequestHandler):
    """The HTTP side of one request: route by path, check access, answer queries through
    `run_request`.

    The engine, the access rules and the policy come in as keyword arguments (ChdbGateway binds
    them), as SimpleHTTPRequestHandler takes its `directory`: the base class handles the request
    inside __init__, so they must be set before."""

    protocol_version = "HTTP/1.1"
    server_version = "chdb-gateway"

    def __init__(
        self, *args: Any, engine: ChdbEngine, access: Access, policy: SqlPolicy, **kwargs: Any
    ) -> None:
        self.engine = engine
        self.access = access
        self.policy = policy
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        url = urlparse(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path in {"/ping", "/replicas_status"}:  # health checks: open, and say nothing else
            self._reply(200, b"Ok.\n", _TEXT)
            return
        try:
            self.access.check(self.headers, params)
        except GatewayError as exc:
            logger.warning("refused a request from %s: %s", self.client_address[0], exc)
            self._reply_and_close(*refusal_reply(exc))
            return
        if url.path in {"", "/"}:
            self._answer(params)
        else:
            self._reply_and_close(404, f"unknown path {url.path}\n".encode(), _TEXT)

    def _reply_and_close(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """A reply before the request's body was read: the connection cannot carry another."""
        self.close_connection = True
        self._reply(status, body, {**headers, "Connection": "close"})

    def _answer(self, params: dict[str, str]) -> None:
        query_id = params.get("query_id") or ""
        started = time.perf_counter()
        try:
            body = read_body(self.headers, self.rfile) if self.command == "POST" else b""
            # As on a ClickHouse server, a GET request is read-only.
            result = run_request(self.engine, self.policy, params, body, read_only=self.command == "GET")
            self._reply(200, result, result_headers(params, query_id))
        except (GatewayError, PolicyError) as exc:
            self._reply(*refusal_reply(exc))
        except Exception as exc:  # the engine's own errors, reported as ClickHouse does
            self._reply(*engine_error_reply(exc))
        finally:
            logger.debug("query %s took %.1f ms", query_id, (time.perf_counter() - started) * 1000)

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway guards itself (README, "Configuration")."""

    password_file: Path
    extra_hosts: list[str]
    external_access: bool

    @classmethod
    def from_env(cls, env: environment.Env | None = None) -> GatewaySettings:
        return cls(
            password_file=password_file(environment.var_dir(env)),
            extra_hosts=environment.env_list("CHDB_GATEWAY_ALLOWED_HOSTS", "", env),
            external_access=environment.env_bool("CHDB_GATEWAY_EXTERNAL_ACCESS", False, env),
        )


class ChdbGateway:
    """Serves one chDB directory on host:port until `server.shutdown()` is called."""

    def __init__(
        self, data_dir: Path, settings: GatewaySettings, host: str = "127.0.0.1", port: int = 8123
    ) -> None:
        password = gateway_password(settings.password_file)
        self.engine = ChdbEngine(data_dir)
        self.policy = SqlPolicy(self.engine.table_sources(), external_access=settings.external_access)
        self.server = ThreadingHTTPServer((host, port), self._handler)
        self.server.daemon_threads = True
        # The Host names to accept carry the port, known once the socket is bound (port 0: any).
        self.access = Access.for_port(password, int(self.server.server_address[1]), settings.extra_hosts)

    def _handler(self, *args: Any) -> GatewayHandler:
        return GatewayHandler(*args, engine=self.engine, access=self.access, policy=self.policy)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        self.server.server_close()
        self.engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warehouse chdb-gateway",
        description="Serve a chDB data directory over ClickHouse's HTTP interface on 127.0.0.1.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="the chDB data directory to own")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (keep it on loopback)")
    args = parser.parse_args(argv)

    try:
        settings = GatewaySettings.from_env()
        gateway = ChdbGateway(args.data_dir, settings, args.host, args.port)
    except (CredentialError, environment.SettingsError) as exc:
        parser.exit(1, f"chdb-gateway: {exc}\n")
    except OSError as exc:
        parser.exit(1, f"chdb-gateway: cannot listen on {args.host}:{args.port}: {exc}\n")
    except Exception as exc:  # e.g. another process owns the data directory
        parser.exit(1, f"chdb-gateway: cannot open chDB at {args.data_dir}: {exc}\n")

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=gateway.server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info(
        "serving %s on %s; credential in %s; external access %s",
        args.data_dir,
        gateway.url,
        settings.password_file,
        "ENABLED" if settings.external_access else "off",
    )
    gateway.serve_forever()
    gateway.close()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
