"""The analytics API's ClickHouse client: one per thread, created on first use.

clickhouse-connect's HTTP client keeps one session and must not run two queries at once, while
gunicorn threads (or the test server) may serve requests concurrently; a client per thread is cheap
and never shared. The URL and database come from settings (CLICKHOUSE_URL, CLICKHOUSE_DATABASE);
on the local pipeline that is the chDB gateway's HTTP address, never chdb:// (README)."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

from backend.errors import AppError
from warehouse.client import ClickHouseClient, check_identifier, connect

_local = threading.local()


class AnalyticsUnavailable(AppError):
    status_code = 503
    code = "analytics_unavailable"


def client() -> ClickHouseClient:
    existing: ClickHouseClient | None = getattr(_local, "client", None)
    if existing is None:
        try:
            existing = connect(settings.CLICKHOUSE_URL)
        except Exception as exc:
            raise AnalyticsUnavailable(f"ClickHouse is not reachable: {exc}") from exc
        _local.client = existing
    return existing


def database() -> str:
    return check_identifier(settings.CLICKHOUSE_DATABASE)


def rows(sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rows of a read-only query as dicts. Values are bound by clickhouse-connect with
    `%(name)s` placeholders (client-side, quoted and escaped): the chDB gateway does not implement
    server-side query parameters."""
    try:
        result = client().query(sql, parameters=parameters or {})  # type: ignore[call-arg]
    except Exception as exc:
        # A broken session is not reused: the next request connects again.
        _local.client = None
        raise AnalyticsUnavailable(f"ClickHouse query failed: {exc}") from exc
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
