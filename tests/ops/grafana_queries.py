"""Reads the panels of the Grafana dashboards and turns their queries into SQL an engine can run:
Grafana's macros and the dashboards' variables are replaced by concrete values, the way Grafana
does before it sends a query to ClickHouse (grafana-clickhouse-datasource) or MySQL."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO_DIR / "grafana" / "dashboards"


@dataclass(frozen=True)
class PanelQuery:
    dashboard_uid: str
    panel_id: int
    panel_title: str
    panel_type: str
    datasource_type: str
    datasource_uid: str
    text: str  # rawSql, or a PromQL expression for Prometheus
    format: str  # "table" or "time_series"

    @property
    def key(self) -> str:
        return f"{self.dashboard_uid}/{self.panel_id} {self.panel_title}"


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def _format_of(target: dict[str, Any]) -> str:
    fmt = target.get("format")
    # ClickHouse plugin: 0 = time series, 1 = table; MySQL: "time_series" / "table".
    if fmt in (0, "time_series") or target.get("queryType") == "timeseries":
        return "time_series"
    return "table"


def panel_queries() -> list[PanelQuery]:
    queries = []
    for dashboard in load_dashboards().values():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                datasource = target.get("datasource") or panel["datasource"]
                queries.append(
                    PanelQuery(
                        dashboard_uid=dashboard["uid"],
                        panel_id=panel["id"],
                        panel_title=panel["title"],
                        panel_type=panel["type"],
                        datasource_type=datasource["type"],
                        datasource_uid=datasource["uid"],
                        text=target.get("rawSql") or target.get("expr") or "",
                        format=_format_of(target),
                    )
                )
    return queries


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _replace_macro(sql: str, name: str, expand: Any) -> str:
    """Replaces $__name(arg, ...) by expand(*args)."""
    pattern = re.compile(r"\$__" + name + r"\(([^()]*)\)")
    return pattern.sub(lambda m: expand(*[a.strip() for a in m.group(1).split(",")]), sql)


def render_clickhouse(sql: str, *, database: str, time_from: datetime, time_to: datetime) -> str:
    """Expands the grafana-clickhouse-datasource macros the dashboards use."""
    start, end = _epoch(time_from), _epoch(time_to)
    sql = _replace_macro(
        sql, "timeFilter", lambda col: f"{col} >= toDateTime({start}) AND {col} <= toDateTime({end})"
    )
    sql = _replace_macro(
        sql,
        "dateFilter",
        lambda col: f"{col} >= toDate('{time_from:%Y-%m-%d}') AND {col} <= toDate('{time_to:%Y-%m-%d}')",
    )
    sql = sql.replace("$__fromTime", f"toDateTime({start})").replace("$__toTime", f"toDateTime({end})")
    sql = sql.replace("${__from}", str(start * 1000)).replace("${__to}", str(end * 1000))
    return _variables(sql, database=database)


def render_mysql(sql: str, *, time_from: datetime, time_to: datetime) -> str:
    """Expands the Grafana SQL-datasource macros (MySQL flavour) the dashboards use."""
    start, end = _epoch(time_from), _epoch(time_to)
    sql = _replace_macro(
        sql, "timeFilter", lambda col: f"{col} BETWEEN FROM_UNIXTIME({start}) AND FROM_UNIXTIME({end})"
    )

    def time_group(col: str, interval: str) -> str:
        seconds = _interval_seconds(interval.strip("'\""))
        return f"cast(cast(UNIX_TIMESTAMP({col})/({seconds}) as signed)*{seconds} as signed)"

    sql = _replace_macro(sql, "timeGroupAlias", lambda col, i: f'{time_group(col, i)} AS "time"')
    sql = _replace_macro(sql, "timeGroup", time_group)
    return _variables(sql, database="")


def _interval_seconds(interval: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    match = re.fullmatch(r"(\d+)([smhd])", interval)
    if not match:
        raise ValueError(f"unsupported interval {interval!r}")
    return int(match.group(1)) * units[match.group(2)]


def _variables(sql: str, *, database: str) -> str:
    if database:
        sql = sql.replace("${database}", database).replace("$database", database)
    leftover = re.search(r"\$\{?_*[A-Za-z]\w*", sql)
    if leftover:
        # A macro or variable this helper does not know: the test must not run half-rendered SQL.
        raise ValueError(f"unexpanded Grafana macro or variable {leftover.group(0)!r} in: {sql}")
    return sql
