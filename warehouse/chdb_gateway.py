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
There is no authentication: the server binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import zlib
from email.message import Message
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

logger = logging.getLogger("warehouse.chdb_gateway")

# INSERT INTO db.table [(a, b)] FORMAT Fmt — its data follows: after a newline in the same body
# (ClickHouse's own convention), or as the whole body when the statement is the `query` parameter.
_INSERT_WITH_DATA = re.compile(
    rb"^\s*INSERT\s+INTO\s+(?P<target>[^\s(]+(?:\s*\([^)]*\))?)\s+FORMAT\s+(?P<format>\w+)[ \t]*(?:\r?\n|$)",
    re.IGNORECASE,
)
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
    """A request the gateway refuses before it reaches the engine."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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

    def execute(self, sql: str, *, database: str | None, output_format: str) -> bytes:
        if database:
            if not _IDENTIFIER.match(database):
                raise GatewayError(400, f"invalid database name: {database!r}")
            sql = f"USE {database}; {sql}"
        with self._lock:
            result = self._session.query(sql, output_format)
        return bytes(result.bytes()) if result is not None else b""

    def insert(self, target: str, data_format: str, data: bytes, *, database: str | None) -> None:
        # chDB takes SQL text only, so binary insert data goes through a spool file read by file().
        fd, name = tempfile.mkstemp(dir=self._spool, suffix=f".{data_format.lower()}")
        try:
            with os.fdopen(fd, "wb") as spool:
                spool.write(data)
            sql = f"INSERT INTO {target} SELECT * FROM file('{name}', '{data_format}')"
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


def run_request(engine: ChdbEngine, params: dict[str, str], body: bytes) -> bytes:
    """One ClickHouse request: an INSERT that carries data becomes an engine insert; anything else
    is SQL text from the `query` parameter and/or the body, answered in `default_format`."""
    query = params.get("query", "")
    database = params.get("database") or None
    if query:
        insert, data = _INSERT_WITH_DATA.match(query.encode()), body
    else:
        insert = _INSERT_WITH_DATA.match(body)
        data = body[insert.end() :] if insert else b""
    if insert and data:
        engine.insert(insert["target"].decode(), insert["format"].decode(), data, database=database)
        return b""
    sql = f"{query}\n{body.decode()}" if query and body else query or body.decode()
    if not sql.strip():
        raise GatewayError(400, "empty query: send it in the body or the `query` parameter")
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


class GatewayHandler(BaseHTTPRequestHandler):
    """The HTTP side of one request: route by path, answer queries through `run_request`.

    The engine comes in as a keyword argument (bind it with functools.partial), as
    SimpleHTTPRequestHandler takes its `directory`: the base class handles the request inside
    __init__, so it must be set before."""

    protocol_version = "HTTP/1.1"
    server_version = "chdb-gateway"

    def __init__(self, *args: Any, engine: ChdbEngine, **kwargs: Any) -> None:
        self.engine = engine
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        url = urlparse(self.path)
        if url.path in {"/ping", "/replicas_status"}:
            self._reply(200, b"Ok.\n", _TEXT)
        elif url.path in {"", "/"}:
            self._answer(dict(parse_qsl(url.query, keep_blank_values=True)))
        else:
            self._reply(404, f"unknown path {url.path}\n".encode())

    def _answer(self, params: dict[str, str]) -> None:
        query_id = params.get("query_id") or ""
        started = time.perf_counter()
        try:
            body = read_body(self.headers, self.rfile) if self.command == "POST" else b""
            self._reply(200, run_request(self.engine, params, body), result_headers(params, query_id))
        except GatewayError as exc:
            self._reply(exc.status, f"{exc}\n".encode(), _TEXT)
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


class ChdbGateway:
    """Serves one chDB directory on host:port until `server.shutdown()` is called."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 8123) -> None:
        self.engine = ChdbEngine(data_dir)
        self.server = ThreadingHTTPServer((host, port), partial(GatewayHandler, engine=self.engine))
        self.server.daemon_threads = True

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
        gateway = ChdbGateway(args.data_dir, args.host, args.port)
    except OSError as exc:
        parser.exit(1, f"chdb-gateway: cannot listen on {args.host}:{args.port}: {exc}\n")
    except Exception as exc:  # e.g. another process owns the data directory
        parser.exit(1, f"chdb-gateway: cannot open chDB at {args.data_dir}: {exc}\n")

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=gateway.server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("serving %s on %s", args.data_dir, gateway.url)
    gateway.serve_forever()
    gateway.close()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
