"""Benchmark (not a test): loads N orders into a fresh chDB directory and reports each analytics
view's query latency (p50/p95), then compares with refreshable materialized views over the same
views (query latency and the time one refresh takes).

    python -m consumers.bench_views [--orders 1000000] [--runs 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="bench-chdb-")
    try:
        _measure(connect(f"chdb://{data_dir}"), args.orders, args.runs)
    finally:
        # A million orders take real disk space: the directory goes with the run.
        shutil.rmtree(data_dir, ignore_errors=True)


def _measure(client: ClickHouseClient, orders: int, runs: int) -> None:
    migrate(client, DB)
    start = time.perf_counter()
    load(client, orders)
    print(f"loaded {orders:,} orders in {time.perf_counter() - start:.1f}s")
    parts = client.query(f"SELECT count() FROM system.parts WHERE database='{DB}' AND active").result_rows
    print(f"active parts: {parts[0][0]}")

    print("\n(a) live views: plain views over FINAL, exact, zero staleness")
    for view in VIEWS:
        p50, p95 = timed(partial(client.query, f"SELECT * FROM {DB}.{view}_live"), runs)
        print(f"  {view + '_live':22s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")

    print("\n(b) contract views: refreshable materialized views (REFRESH EVERY 5 SECOND)")
    total_refresh = 0.0
    for view in VIEWS:
        refresh_ms = timed(partial(refresh, client, f"{view}_mv"), 5)[0]
        total_refresh += refresh_ms
        p50, p95 = timed(partial(client.query, f"SELECT * FROM {DB}.{view}_mv"), runs)
        print(f"  {view + '_mv':22s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   refresh {refresh_ms:7.1f} ms")
    print(f"\nall refreshes: {total_refresh:.0f} ms of work every 5 s at {orders:,} orders")


def refresh(client: ClickHouseClient, view: str) -> None:
    client.command(f"SYSTEM REFRESH VIEW {DB}.{view}")
    client.command(f"SYSTEM WAIT VIEW {DB}.{view}")


if __name__ == "__main__":
    main()
