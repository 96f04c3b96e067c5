"""View query latency: loads N orders into a fresh chDB directory, then times every analytics view
(p50/p95): the plain `_live` views over FINAL and the refreshable `_mv` views, with the time one
refresh takes. Each run has a process of its own (one chDB engine per process).

    python -m bench.views --orders 100000 --runs 20     # one JSON line (the benchmark's views stage)
    python -m bench.views --orders 1000000 --text       # the same measurement as a readable report
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from warehouse.client import ClickHouseClient, connect
from warehouse.schema import migrate

VIEWS = ["daily_sales", "hourly_sales", "order_status", "user_analytics", "top_products"]
DB = "analytics"


def load(client: ClickHouseClient, orders: int) -> None:
    """Every order created (2 lines each), 30% with a later status change, 5% deleted 1-6 days ago:
    several versions per order in separate parts, as the sink would leave them before merges."""
    statuses = "['PENDING','PAID','SHIPPED','DELIVERED','CANCELLED','REFUNDED']"
    base = """
        number + 1 AS order_id, (number % 50000) + 1 AS user_id,
        concat('user', toString((number % 50000) + 1), '@example.com') AS user_email,
        toDate(created_at) AS order_date, toDecimal64((number % 997) + 0.99, 2) AS total_amount,
        toUInt32(number % 5 + 1) AS items_count"""
    items = """[number % 500 + 1, number % 487 + 1], ['SKU-A', 'SKU-B'], ['Product A', 'Product B'],
        [1, 2], [toDecimal64(9.99, 2), toDecimal64(19.98, 2)]"""
    created = "toDateTime64(now64(6) - toIntervalSecond(number % (365*86400)), 6, 'UTC') AS created_at"
    client.command(f"""
        INSERT INTO {DB}.orders_analytics
        SELECT {base}, 'PENDING', 'CARD', 'PENDING', {created}, 1, 'OrderCreated', NULL, 0, {items}
        FROM numbers({orders})""")
    client.command(f"""
        INSERT INTO {DB}.orders_analytics
        SELECT {base}, {statuses}[number % 6 + 1], 'CARD', 'COMPLETED', {created}, 2,
               'OrderStatusChanged', NULL, 0, {items}
        FROM numbers({orders}) WHERE number % 10 < 3""")
    client.command(f"""
        INSERT INTO {DB}.orders_analytics
        SELECT {base}, 'PAID', 'CARD', 'COMPLETED', {created}, 3, 'OrderDeleted',
               now64(6) - toIntervalDay(number % 6 + 1), 1, {items}
        FROM numbers({orders}) WHERE number % 20 = 0""")
    client.command(f"""
        INSERT INTO {DB}.order_tombstones
        SELECT number + 1, now64(6) - toIntervalDay(number % 6 + 1), 3
        FROM numbers({orders}) WHERE number % 20 = 0""")


def timed(run: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def refresh(client: ClickHouseClient, view: str) -> None:
    client.command(f"SYSTEM REFRESH VIEW {DB}.{view}")
    client.command(f"SYSTEM WAIT VIEW {DB}.{view}")


def measure(orders: int, runs: int) -> dict[str, Any]:
    # A million orders take real disk space: the directory goes with the run.
    directory = tempfile.mkdtemp(prefix="bench-views-")
    try:
        client = connect(f"chdb://{directory}")
        migrate(client, DB)
        started = time.perf_counter()
        load(client, orders)
        load_seconds = time.perf_counter() - started
        parts = client.query(f"SELECT count() FROM system.parts WHERE database='{DB}' AND active").result_rows
        views: dict[str, dict[str, float]] = {}
        for view in VIEWS:
            p50, p95 = timed(partial(client.query, f"SELECT * FROM {DB}.{view}_live"), runs)
            views[f"{view}_live"] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
        for view in VIEWS:
            refresh_ms = timed(partial(refresh, client, f"{view}_mv"), 3)[0]
            p50, p95 = timed(partial(client.query, f"SELECT * FROM {DB}.{view}_mv"), runs)
            views[f"{view}_mv"] = {
                "p50_ms": round(p50, 2),
                "p95_ms": round(p95, 2),
                "refresh_ms": round(refresh_ms, 1),
            }
        return {
            "orders": orders,
            "load_seconds": round(load_seconds, 1),
            "active_parts": int(parts[0][0]),
            "views": views,
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def text_report(result: dict[str, Any]) -> str:
    orders, views = result["orders"], result["views"]

    def latency(name: str) -> str:
        return f"  {name:22s} p50 {views[name]['p50_ms']:7.1f} ms   p95 {views[name]['p95_ms']:7.1f} ms"

    lines = [
        f"loaded {orders:,} orders in {result['load_seconds']:.1f}s",
        f"active parts: {result['active_parts']}",
        "",
        "(a) live views: plain views over FINAL, exact, zero staleness",
        *(latency(f"{view}_live") for view in VIEWS),
        "",
        "(b) contract views: refreshable materialized views (REFRESH EVERY 5 SECOND)",
        *(f"{latency(f'{view}_mv')}   refresh {views[f'{view}_mv']['refresh_ms']:7.1f} ms" for view in VIEWS),
        "",
    ]
    total_refresh = sum(views[f"{view}_mv"]["refresh_ms"] for view in VIEWS)
    lines.append(f"all refreshes: {total_refresh:.0f} ms of work every 5 s at {orders:,} orders")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--text", action="store_true", help="a readable report instead of one JSON line")
    args = parser.parse_args()
    result = measure(args.orders, args.runs)
    print(text_report(result) if args.text else json.dumps(result))


if __name__ == "__main__":
    main()
