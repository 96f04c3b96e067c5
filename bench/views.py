"""The analytics views at a real size, the two designs side by side in one process: loads N orders
into a fresh chDB directory, then measures the incremental views the sink keeps (view_state,
consumers/views.py) and, in the same database, the previous design: refreshable materialized views
recomputing the `_live` views every 5 s. For each: the process's CPU per second at rest (for the
incremental views once the build's own merges are done) and while the sink ingests (chDB runs in the
process, so its background refreshes and merges count), the rows per second ingested, the contract
views' query latency (p50/p95, and the dashboard panels' top tens) and how long a stored order takes
to show in the daily view. Each run has a process of its own (one chDB engine per process).

    python -m bench.views --orders 1000000 --runs 20    # one JSON line (the benchmark's views stage)
    python -m bench.views --orders 10000000 --text      # the same measurement as a readable report
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from consumers.sink import ClickHouseWriter
from consumers.views import Delivered, partition_of, rebuild
from contract.events import OrderItem
from contract.rows import AnalyticsRow
from contract.types import EventType, OrderStatus, PaymentMethod, PaymentStatus
from warehouse.client import ClickHouseClient, connect
from warehouse.schema import migrate

VIEWS = ["daily_sales", "hourly_sales", "order_status", "user_analytics", "top_products"]
DB = "analytics"
PARTITIONS = 3  # of the analytics topic, as the pipeline creates it
USERS, PRODUCTS = 50_000, 500
# The previous design, for the side-by-side figures: what warehouse/schema.sql had before the
# views became incremental.
REFRESHABLE = """CREATE MATERIALIZED VIEW {db}.{view}_refreshable REFRESH EVERY 5 SECOND
ENGINE = MergeTree ORDER BY tuple() AS SELECT * FROM {db}.{view}_live"""


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


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def settle_merges(client: ClickHouseClient, timeout: float = 600.0, quiet: float = 2.0) -> float:
    """Waits until chDB has run no merge for `quiet` seconds (at most `timeout`) and returns how
    long that took. A build writes millions of rows at once, and merging its parts is a one-off
    cost of the build: measured at rest right after it, it would pass for the views' upkeep."""
    started = time.perf_counter()
    quiet_since = None
    while time.perf_counter() - started < timeout:
        running = int(
            client.query(f"SELECT count() FROM system.merges WHERE database = '{DB}'").result_rows[0][0]
        )
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.perf_counter()
        elif time.perf_counter() - quiet_since >= quiet:
            break
        time.sleep(0.2)
    return time.perf_counter() - started


def cpu_at_rest(seconds: float) -> float:
    """The process's CPU per second of wall time while nothing but its background work runs (a
    refreshable view refreshing, merges), in cores."""
    before, started = cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds() - before) / (time.perf_counter() - started)


class Orders:
    """The sink's rows of a running shop: new orders, and status changes of orders it made."""

    def __init__(self, first_id: int) -> None:
        self._next = first_id
        self._rng = random.Random(first_id)
        self._made: list[tuple[int, int, datetime, int]] = []  # order id, user, created_at, product
        self._offsets = [0] * PARTITIONS

    def _row(self, order_id: int, user_id: int, created: datetime, product: int, version: int,
             status: str) -> AnalyticsRow:  # fmt: skip
        items = [
            OrderItem(product_id=product, sku=f"SKU-{product}", product_name=f"Product {product}",
                      quantity=2, unit_price="9.99", line_total="19.98"),
        ]  # fmt: skip
        return AnalyticsRow(
            schema_version=1, order_id=order_id, user_id=user_id, user_email=f"user{user_id}@example.com",
            order_date=created.date(), total_amount="19.98", items_count=2, status=OrderStatus(status),
            payment_method=PaymentMethod.CARD, payment_status=PaymentStatus.COMPLETED, created_at=created,
            version=version, deleted_at=None,
            event_type=EventType.ORDER_CREATED if version == 1 else EventType.ORDER_STATUS_CHANGED,
            is_deleted=False, items=items,
        )  # fmt: skip

    def batch(self, size: int, changes: float = 0.3) -> list[Delivered]:
        """`size` rows, a share `changes` of them a PENDING order of this run becoming PAID."""
        out = []
        now = datetime.now(UTC)
        for _ in range(size):
            if self._made and self._rng.random() < changes:
                order_id, user_id, created, product = self._made.pop(self._rng.randrange(len(self._made)))
                row = self._row(order_id, user_id, created, product, 2, "PAID")
            else:
                order_id, user_id = self._next, self._rng.randrange(1, USERS + 1)
                product = self._rng.randrange(1, PRODUCTS + 1)
                self._next += 1
                self._made.append((order_id, user_id, now, product))
                row = self._row(order_id, user_id, now, product, 1, "PENDING")
            p = partition_of(row.user_id or 0, PARTITIONS)
            out.append(Delivered(row, p, self._offsets[p]))
            self._offsets[p] += 1
        return out


def ingest(
    write: Callable[[list[Delivered]], object], orders: Orders, seconds: float, batch: int
) -> dict[str, float]:
    """Writes batches for `seconds`: rows per second and the process's CPU per second."""
    rows, before, started = 0, cpu_seconds(), time.perf_counter()
    while time.perf_counter() - started < seconds:
        items = orders.batch(batch)
        write(items)
        rows += len(items)
    wall = time.perf_counter() - started
    return {"rows_per_s": round(rows / wall), "cpu_cores": round((cpu_seconds() - before) / wall, 3)}


def visible_after(client: ClickHouseClient, view: str, write: Callable[[list[Delivered]], object],
                  orders: Orders, samples: int, timeout: float) -> dict[str, Any]:  # fmt: skip
    """How long one stored order takes to show in the daily view (its count of today goes up)."""
    today = datetime.now(UTC).date().isoformat()
    sql = f"SELECT sum(orders_count) FROM {DB}.{view} WHERE order_date = toDate('{today}')"
    waits, missed = [], 0
    for _ in range(samples):
        before = int(client.query(sql).result_rows[0][0] or 0)
        started = time.perf_counter()
        write(orders.batch(1, changes=0))
        while int(client.query(sql).result_rows[0][0] or 0) <= before:
            if time.perf_counter() - started > timeout:
                missed += 1
                break
            time.sleep(0.05)
        else:
            waits.append((time.perf_counter() - started) * 1000)
    waits.sort()
    return {
        "p50_ms": round(statistics.median(waits), 1) if waits else None,
        "p95_ms": round(waits[min(len(waits) - 1, int(len(waits) * 0.95))], 1) if waits else None,
        "not_visible": missed,
        "timeout_s": timeout,
    }


DASHBOARD = Path(__file__).resolve().parents[1] / "grafana" / "dashboards" / "sales-analytics.json"


def panel_queries() -> dict[str, str]:
    """What the dashboard's panels ask of the two views with a row per customer or product (their
    top ten), with `{view}` where the panel names the view; the other views' panels read every row."""
    found = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            sql = target.get("rawSql", "")
            for view in ("user_analytics", "top_products"):
                if f"${{database}}.{view}_mv" in sql:
                    found[view] = sql.replace(f"${{database}}.{view}_mv", "{view}")
    return found


def queries(client: ClickHouseClient, suffix: str, runs: int) -> dict[str, dict[str, float]]:
    """Each view read whole (`SELECT *`), and the panel's own query where it reads less."""
    out = {}
    panels = panel_queries()
    for view in VIEWS:
        p50, p95 = timed(partial(client.query, f"SELECT * FROM {DB}.{view}{suffix}"), runs)
        out[view] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
        if view in panels:
            sql = panels[view].format(view=f"{DB}.{view}{suffix}")
            p50, p95 = timed(partial(client.query, sql), runs)
            out[view]["panel_p50_ms"], out[view]["panel_p95_ms"] = round(p50, 2), round(p95, 2)
    return out


def measure(orders: int, runs: int, window: float, batch: int, samples: int) -> dict[str, Any]:
    # Millions of orders take real disk space: the directory goes with the run.
    directory = tempfile.mkdtemp(prefix="bench-views-")
    try:
        client = connect(f"chdb://{directory}")
        migrate(client, DB)
        started = time.perf_counter()
        load(client, orders)
        load_seconds = time.perf_counter() - started
        client.command(f"OPTIMIZE TABLE {DB}.orders_analytics FINAL")
        writer = ClickHouseWriter(client, DB, partitions=lambda: PARTITIONS)
        shop = Orders(orders + 1)

        started = time.perf_counter()
        rebuild(client, DB, PARTITIONS)
        incremental: dict[str, Any] = {"build_seconds": round(time.perf_counter() - started, 1)}
        incremental["build_merges_seconds"] = round(settle_merges(client), 1)
        incremental["cpu_at_rest_cores"] = round(cpu_at_rest(window), 4)
        incremental["ingest"] = ingest(writer.write, shop, window, batch)
        incremental["queries"] = queries(client, "_mv", runs)
        incremental["visible"] = visible_after(client, "daily_sales_mv", writer.write, shop, samples * 4, 10)

        started = time.perf_counter()
        for view in VIEWS:
            client.command(REFRESHABLE.format(db=DB, view=view))
        for view in VIEWS:
            client.command(f"SYSTEM WAIT VIEW {DB}.{view}_refreshable")
        refreshable: dict[str, Any] = {"first_refresh_seconds": round(time.perf_counter() - started, 1)}
        refreshable["cpu_at_rest_cores"] = round(cpu_at_rest(window), 4)

        def store(items: list[Delivered]) -> object:
            return writer.store(items)  # the table only: the refreshes bring it into the views

        refreshable["ingest"] = ingest(store, shop, window, batch)
        refreshable["queries"] = queries(client, "_refreshable", runs)
        refreshable["visible"] = visible_after(
            client, "daily_sales_refreshable", store, shop, samples, max(30.0, 6 * window)
        )
        for view in VIEWS:
            client.command(f"DROP TABLE {DB}.{view}_refreshable SYNC")
        return {
            "orders": orders,
            "load_seconds": round(load_seconds, 1),
            "window_seconds": window,
            "batch_rows": batch,
            "incremental": incremental,
            "refreshable": refreshable,
            # Every view's latencies under one key, as the report and the medians read them.
            "views": {
                **{f"{view}_mv": incremental["queries"][view] for view in VIEWS},
                **{f"{view}_refreshable": refreshable["queries"][view] for view in VIEWS},
            },
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def text_report(result: dict[str, Any]) -> str:
    inc, ref = result["incremental"], result["refreshable"]

    def row(name: str, a: Any, b: Any) -> str:
        return f"  {name:34s} {a!s:>16} {b!s:>16}"

    lines = [
        f"{result['orders']:,} orders loaded in {result['load_seconds']:.1f} s; windows of "
        f"{result['window_seconds']:.0f} s, sink batches of {result['batch_rows']} rows",
        f"incremental state built in {inc['build_seconds']} s (its parts merged in "
        f"{inc.get('build_merges_seconds')} s more); refreshable views' first refresh "
        f"{ref['first_refresh_seconds']} s",
        "",
        row("", "incremental", "refreshable"),
        row("CPU at rest (cores)", inc["cpu_at_rest_cores"], ref["cpu_at_rest_cores"]),
        row("sink rows/s", inc["ingest"]["rows_per_s"], ref["ingest"]["rows_per_s"]),
        row("CPU while ingesting (cores)", inc["ingest"]["cpu_cores"], ref["ingest"]["cpu_cores"]),
        row("stored -> daily view p50 (ms)", inc["visible"]["p50_ms"], ref["visible"]["p50_ms"]),
        row("stored -> daily view p95 (ms)", inc["visible"]["p95_ms"], ref["visible"]["p95_ms"]),
        row("not visible in time", inc["visible"]["not_visible"], ref["visible"]["not_visible"]),
    ]
    for view in VIEWS:
        a, b = inc["queries"][view], ref["queries"][view]
        lines.append(
            row(f"{view} p50/p95 (ms)", f"{a['p50_ms']}/{a['p95_ms']}", f"{b['p50_ms']}/{b['p95_ms']}")
        )
        if "panel_p50_ms" in a:
            lines.append(
                row(
                    "  its panel's top 10 p50/p95 (ms)",
                    f"{a['panel_p50_ms']}/{a['panel_p95_ms']}",
                    f"{b['panel_p50_ms']}/{b['panel_p95_ms']}",
                )
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="queries per view")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of each CPU window")
    parser.add_argument("--batch", type=int, default=5000, help="rows per sink write while ingesting")
    parser.add_argument("--samples", type=int, default=5, help="visibility samples (x4 incremental)")
    parser.add_argument("--text", action="store_true", help="a readable report instead of one JSON line")
    args = parser.parse_args()
    result = measure(args.orders, args.runs, args.window, args.batch, args.samples)
    print(text_report(result) if args.text else json.dumps(result))


if __name__ == "__main__":
    main()
