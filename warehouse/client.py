"""The ClickHouse boundary: one small wrapper around clickhouse-connect used by the sink, the
schema migration and the analytics API. It works for a ClickHouse server (`http(s)://…`) and for
in-process chDB (`chdb:///dir`) alike."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Inserts must be synchronous so that a successful insert means the rows are readable: only then
# may the sink commit the Kafka offsets that cover them.
SYNC_INSERT_SETTINGS: dict[str, Any] = {"async_insert": 0, "wait_for_async_insert": 1}


class ClickHouseClient(Protocol):
    """The part of clickhouse-connect's client the project uses (tests wrap a real client)."""

    def command(self, cmd: str, *, settings: dict[str, Any] | None = None) -> Any: ...

    def query(self, query: str, *, settings: dict[str, Any] | None = None) -> Any: ...

    def raw_query(
        self, query: str, *, settings: dict[str, Any] | None = None, fmt: str | None = None
    ) -> bytes: ...

    def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        *,
        column_names: Sequence[str],
        settings: dict[str, Any] | None = None,
    ) -> Any: ...

    def raw_insert(
        self,
        table: str,
        column_names: Sequence[str],
        insert_block: bytes,
        settings: dict[str, Any] | None = None,
        fmt: str | None = None,
    ) -> Any: ...


def connect(url: str, timeout: float | None = None) -> ClickHouseClient:
    """A client for `http(s)://user:password@host:port` or `chdb:///data/dir`. `timeout` bounds
    each connect and each wait for an answer of a server (chDB runs in-process: nothing to bound)."""
    import clickhouse_connect

    if not url.startswith(("http://", "https://", "chdb://")):
        raise ValueError(f"CLICKHOUSE_URL must start with http://, https:// or chdb://, got {url!r}")
    waits: dict[str, Any] = {}
    if timeout is not None and not url.startswith("chdb://"):
        seconds = max(1, round(timeout))
        waits = {"connect_timeout": seconds, "send_receive_timeout": seconds}
    client: ClickHouseClient = clickhouse_connect.get_client(dsn=url, **waits)
    return client


def redacted(url: str) -> str:
    """`url` fit for a log or a message: its password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid ClickHouse database name: {name!r}")
    return name


_ROW_RETURNING = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN")


def query_rows(client: ClickHouseClient, sql: str) -> list[tuple[Any, ...]]:
    """The rows of a query; statements that return no rows (SYSTEM, OPTIMIZE, …) return []."""
    words = sql.split(maxsplit=1)
    if not words or words[0].upper() not in _ROW_RETURNING:
        client.command(sql)
        return []
    return [tuple(row) for row in client.query(sql).result_rows]
