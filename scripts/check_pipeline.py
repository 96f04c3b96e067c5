"""End-to-end check of a running pipeline: `make test-pipeline [N=1000]`.

Creates N orders through the HTTP API (customers and products of its own, so per-user and
per-product views can be checked exactly), changes the status of some, then waits, with a visible
progress line and a bounded timeout, until every stage holds what the one before handed over:

    MySQL orders → outbox (pending / published) → Kafka order.events (transformer lag)
    → Kafka orders_analytics (sink lag) → ClickHouse orders_analytics → ClickHouse views

It prints the counts per stage and the commit-to-ClickHouse latency percentiles, and exits 1
naming the first stage that does not match (or 2 for bad arguments).

Latency: for each order, from the commit of its last change (orders.updated_at in MySQL) to the
first poll that saw that version in ClickHouse's orders_analytics. A watcher thread polls from
before the first order is created, `--poll` seconds apart (default 0.5 s), which bounds the
resolution; the figure includes the relay (on-commit kick or beat tick), both consumers' batching
and the sink's write, which updates the views in the same step.

Where each stage lives comes from the environment (scripts/pipeline_checks.py), so the same script
runs against `make run` and the compose stack.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from scripts.pipeline_checks import (
    Api,
    StageFailed,
    TopicState,
    admin_headers,
    api_url,
    clickhouse,
    clickhouse_database,
    clickhouse_url,
    id_list,
    kafka_admin,
    kafka_state,
    percentile,
    run_script,
    wait_for,
)
from warehouse.client import redacted

PRODUCTS = 5
CUSTOMERS = 10
NOT_REVENUE = ("CANCELLED", "REFUNDED")


@dataclass
class Run:
    tag: str
    user_ids: list[int] = field(default_factory=list)
    product_ids: list[int] = field(default_factory=list)
    order_ids: list[int] = field(default_factory=list)
    status_changes: int = 0


# --- stage 1: the API ----------------------------------------------------------------------------


def create_orders(api: Api, run: Run, count: int, threads: int, seed: int) -> None:
    """Through `api`, which carries the credentials of a staff user (pipeline_checks.admin_headers)."""
    for i in range(PRODUCTS):
        product = api.call(
            "POST",
            "/api/products",
            {"sku": f"TP-{run.tag}-{i}", "name": f"Pipeline check {i}", "price": f"{5 + 7 * i}.50",
             "stock": count * 6 + 100},
        )  # fmt: skip
        run.product_ids.append(int(product["id"]))
    for i in range(CUSTOMERS):
        customer = api.call(
            "POST", "/api/users", {"email": f"tp-{run.tag}-{i}@example.com", "name": f"TP {i}"}
        )
        run.user_ids.append(int(customer["id"]))

    rng = random.Random(seed)
    bodies = [
        {
            "user_id": rng.choice(run.user_ids),
            "items": [
                {"product_id": pid, "quantity": rng.randint(1, 3)}
                for pid in rng.sample(run.product_ids, rng.randint(1, 2))
            ],
            "payment_method": rng.choice(["CARD", "PAYPAL", "BANK_TRANSFER"]),
        }
        for _ in range(count)
    ]
    started = time.monotonic()

    def create(body: dict[str, object]) -> None:
        # Appended as soon as each order exists, so the watcher follows it from its first second.
        run.order_ids.append(int(api.call("POST", "/api/orders", body)["order_id"]))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(create, bodies))
    elapsed = time.monotonic() - started
    print(f"API: created {count} orders in {elapsed:.1f}s ({count / elapsed:.0f}/s, {threads} threads)")

    # Every 5th order is paid, every 10th then shipped, every 7th (unpaid) cancelled.
    changes: list[tuple[int, list[str]]] = []
    for index, order_id in enumerate(run.order_ids):
        if index % 5 == 0:
            changes.append((order_id, ["PAID", "SHIPPED"] if index % 10 == 0 else ["PAID"]))
        elif index % 7 == 0:
            changes.append((order_id, ["CANCELLED"]))

    def change(item: tuple[int, list[str]]) -> int:
        order_id, statuses = item
        for status in statuses:
            api.call("PATCH", f"/api/orders/{order_id}/status", {"status": status})
        return len(statuses)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        run.status_changes = sum(pool.map(change, changes))
    print(f"API: {run.status_changes} status changes on {len(changes)} orders")


class VisibilityWatcher(threading.Thread):
    """Polls ClickHouse from before the first order is created, recording when each version of
    each order first became visible: the end point of the latency measurement."""

    def __init__(self, run: Run, interval: float) -> None:
        super().__init__(daemon=True, name="visibility-watcher")
        self.order_run, self.interval = run, interval
        self.first_seen: dict[tuple[int, int], float] = {}
        self.done = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        client, db = clickhouse(), clickhouse_database()
        while not self.done.wait(self.interval):
            ids = list(self.order_run.order_ids)
            if not ids:
                continue
            try:
                result = client.query(
                    f"SELECT order_id, max(version) FROM {db}.orders_analytics "
                    f"WHERE order_id IN ({id_list(ids)}) GROUP BY order_id"
                )
            except Exception as exc:  # reported by the main loop's own queries
                self.error = exc
                continue
            now = time.time()
            for order_id, version in result.result_rows:
                self.first_seen.setdefault((int(order_id), int(version)), now)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)


# --- the stages' counts ----------------------------------------------------------------------------


@dataclass
class Snapshot:
    mysql_orders: int
    expected_events: int
    outbox: Counter[str]
    order_events: TopicState
    analytics: TopicState
    clickhouse_rows: int  # run orders whose latest ClickHouse version equals MySQL's
    clickhouse_versions: dict[int, int]
    views_mismatch: list[str]
    change_data_capture: bool = False

    def first_failing_stage(self, order_count: int) -> tuple[str, str] | None:
        if self.mysql_orders != order_count:
            return "MySQL", f"{self.mysql_orders} of {order_count} orders found"
        if self.change_data_capture:
            # Debezium reads the rows from the binary log and marks none published.
            written = sum(self.outbox.values())
            if written != self.expected_events:
                return "outbox", f"{written} of {self.expected_events} events in the outbox table"
            published = self.expected_events
        else:
            published = self.outbox.get("published", 0)
        if published != self.expected_events:
            return "outbox relay", (
                f"{published} of {self.expected_events} events published "
                f"(pending {self.outbox.get('pending', 0)}, failed {self.outbox.get('failed', 0)})"
            )
        if self.order_events.lag:
            return "transformer", f"consumer group {self.order_events.group} lags {self.order_events.lag} " \
                f"messages on {self.order_events.topic}"  # fmt: skip
        if self.analytics.lag:
            return "sink", f"consumer group {self.analytics.group} lags {self.analytics.lag} messages on " \
                f"{self.analytics.topic}"  # fmt: skip
        if self.clickhouse_rows != order_count:
            return "ClickHouse rows", f"{self.clickhouse_rows} of {order_count} orders at their MySQL version"
        if self.views_mismatch:
            return "ClickHouse views", "; ".join(self.views_mismatch)
        return None


class Stages:
    def __init__(self, run: Run, *, whole_database: bool = True, change_data_capture: bool = False) -> None:
        from consumers.settings import ConsumerSettings

        self.run = run
        self.whole_database = whole_database
        self.change_data_capture = change_data_capture
        self.settings = ConsumerSettings.from_env()
        self.admin = kafka_admin()
        self.client = clickhouse()
        self.db = clickhouse_database()
        self.mysql_versions: dict[int, tuple[int, datetime]] = {}

    def read_mysql(self) -> None:
        from orders.models import Order

        rows = Order.objects.filter(id__in=self.run.order_ids).values_list("id", "version", "updated_at")
        self.mysql_versions = {oid: (version, updated) for oid, version, updated in rows}

    def outbox(self) -> Counter[str]:
        from django.db.models import Count

        from outbox.models import OutboxEvent

        rows = (
            OutboxEvent.objects.filter(
                aggregate_type="order", aggregate_id__in=[str(i) for i in self.run.order_ids]
            )
            .values("status")
            .annotate(n=Count("id"))
        )
        return Counter({row["status"]: row["n"] for row in rows})

    def clickhouse_versions(self) -> dict[int, int]:
        result = self.client.query(
            f"SELECT order_id, max(version) FROM {self.db}.orders_analytics "
            f"WHERE order_id IN ({id_list(self.run.order_ids)}) GROUP BY order_id"
        )
        return {int(oid): int(version) for oid, version in result.result_rows}

    def views_mismatch(self) -> list[str]:
        """Every view against the same figure computed from MySQL; the run's own customers and
        products are compared exactly, the global views against every order in MySQL."""
        from django.db.models import Count, Q, Sum

        from orders.models import Order, OrderItem

        problems: list[str] = []
        live = Order.objects.filter(deleted_at__isnull=True)
        paying = live.exclude(status__in=NOT_REVENUE)
        db = self.db

        expected_users = {
            row["user_id"]: (row["n"], row["spent"] or Decimal(0))
            for row in live.filter(user_id__in=self.run.user_ids)
            .values("user_id")
            .annotate(n=Count("id"), spent=Sum("total_amount", filter=~Q(status__in=NOT_REVENUE)))
        }
        got_users = {
            int(uid): (int(n), Decimal(spent))
            for uid, n, spent in self.client.query(
                f"SELECT user_id, orders_count, total_spent FROM {db}.user_analytics_mv "
                f"WHERE user_id IN ({id_list(self.run.user_ids)})"
            ).result_rows
        }
        if got_users != expected_users:
            problems.append("user_analytics_mv differs from MySQL for this run's customers")

        expected_products = {
            row["product_id"]: (int(row["units"]), row["revenue"])
            for row in OrderItem.objects.filter(
                product_id__in=self.run.product_ids, order__deleted_at__isnull=True
            )
            .exclude(order__status__in=NOT_REVENUE)
            .values("product_id")
            .annotate(units=Sum("quantity"), revenue=Sum("line_total"))
        }
        got_products = {
            int(pid): (int(units), Decimal(revenue))
            for pid, units, revenue in self.client.query(
                f"SELECT product_id, units_sold, revenue FROM {db}.top_products_mv "
                f"WHERE product_id IN ({id_list(self.run.product_ids)})"
            ).result_rows
        }
        if got_products != expected_products:
            problems.append("top_products_mv differs from MySQL for this run's products")
        if not self.whole_database:
            return problems

        # The global views hold every order: they equal MySQL only when ClickHouse was fed from
        # this very database since its first order (a fresh setup, or one rebuilt from Kafka).
        expected_status = dict(live.values_list("status").annotate(n=Count("id")))
        got_status = {
            str(s): int(n)
            for s, n in self.client.query(
                f"SELECT status, orders_count FROM {db}.order_status_mv"
            ).result_rows
        }
        if got_status != expected_status:
            problems.append(f"order_status_mv {got_status} != MySQL {expected_status}")

        expected_daily = (paying.count(), paying.aggregate(s=Sum("total_amount"))["s"] or Decimal(0))
        for view in ("daily_sales_mv", "hourly_sales_mv"):
            n, revenue = self.client.query(
                f"SELECT sum(orders_count), sum(revenue) FROM {db}.{view}"
            ).result_rows[0]
            if (int(n), Decimal(revenue)) != expected_daily:
                problems.append(f"{view} counts {n} orders / {revenue} revenue, MySQL {expected_daily[0]} / "
                                f"{expected_daily[1]}")  # fmt: skip
        return problems

    def snapshot(self, with_views: bool) -> Snapshot:
        self.read_mysql()
        versions = self.clickhouse_versions()
        at_version = sum(1 for oid, (v, _) in self.mysql_versions.items() if versions.get(oid) == v)
        rows_match = at_version == len(self.run.order_ids)
        return Snapshot(
            mysql_orders=len(self.mysql_versions),
            expected_events=sum(v for v, _ in self.mysql_versions.values()),
            outbox=self.outbox(),
            order_events=kafka_state(
                self.admin, self.settings.order_events_topic, self.settings.transformer_group_id
            ),
            analytics=kafka_state(self.admin, self.settings.analytics_topic, self.settings.sink_group_id),
            clickhouse_rows=at_version,
            clickhouse_versions=versions,
            views_mismatch=self.views_mismatch() if with_views and rows_match else ["not checked yet"],
            change_data_capture=self.change_data_capture,
        )


# --- the run -------------------------------------------------------------------------------------------


def print_summary(
    snap: Snapshot, run: Run, latencies: list[float], waited: float, stages_whole_db: bool
) -> None:
    o = snap.outbox
    print("stage                  count")
    print(f"  MySQL orders         {snap.mysql_orders} (events expected {snap.expected_events}: "
          f"{len(run.order_ids)} created + {run.status_changes} status changes)")  # fmt: skip
    print(f"  outbox               published {o.get('published', 0)}, pending {o.get('pending', 0)}, "
          f"failed {o.get('failed', 0)}")  # fmt: skip
    for state in (snap.order_events, snap.analytics):
        print(f"  Kafka {state.topic:<14} end offset {state.end_offset} (all partitions), "
              f"group {state.group} lag {state.lag}")  # fmt: skip
    print(
        f"  ClickHouse rows      {snap.clickhouse_rows} of {len(run.order_ids)} orders at their MySQL version"
    )
    views = (
        "user_analytics_mv, top_products_mv"
        if not stages_whole_db
        else ("daily_sales_mv, hourly_sales_mv, order_status_mv, user_analytics_mv, top_products_mv")
    )
    print(f"  ClickHouse views     {views} match MySQL")  # fmt: skip
    if latencies:
        print(
            f"latency commit→ClickHouse over {len(latencies)} orders: p50 {percentile(latencies, 0.5):.2f}s, "
            f"p95 {percentile(latencies, 0.95):.2f}s, p99 {percentile(latencies, 0.99):.2f}s, "
            f"max {max(latencies):.2f}s"
        )
    print(f"PASS: {len(run.order_ids)} orders reached ClickHouse and every view in {waited:.1f}s")


def api_as_of(api: Api) -> datetime | None:
    value = api.call("GET", "/api/analytics/status-distribution").get("as_of")
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_watermark(api: Api, stages: Stages, timeout: float) -> None:
    """The freshness watermark the API reports must reach the run's last commit once every stage
    holds it (README, "Freshness watermark")."""
    from django.db.models import Max

    from outbox.models import OutboxEvent

    last = OutboxEvent.objects.filter(
        aggregate_type="order", aggregate_id__in=[str(i) for i in stages.run.order_ids]
    ).aggregate(last=Max("occurred_at"))["last"]
    seen: dict[str, datetime | None] = {}

    def probe() -> tuple[bool, str]:
        seen["as_of"] = api_as_of(api)
        return seen["as_of"] is not None and seen["as_of"] >= last, f"as_of {seen['as_of']}"

    waited = wait_for(
        "the freshness watermark", probe, timeout,
        lambda: StageFailed("watermark", f"as_of {seen.get('as_of')} never reached the last commit {last}"),
    )  # fmt: skip
    as_of = seen["as_of"]
    assert as_of is not None
    print(f"freshness watermark: views as of {as_of.isoformat()}, {(as_of - last).total_seconds():.1f}s "
          f"after the run's last commit (reached {waited:.1f}s after every stage matched)")  # fmt: skip


def check(args: argparse.Namespace) -> None:
    api = Api(api_url())
    ready = api.call("GET", "/readyz")
    if ready.get("status") != "ready":
        raise StageFailed("web", f"/readyz reports {ready}")
    print(f"pipeline under test: API {api.base_url}, ClickHouse {redacted(clickhouse_url())}")
    run = Run(tag=uuid.uuid4().hex[:8])
    watcher = VisibilityWatcher(run, args.poll)
    watcher.start()
    # Orders and customers are personal data: the API serves them to authenticated staff only.
    create_orders(Api(api.base_url, admin_headers()), run, args.orders, args.threads, args.seed)
    stages = Stages(run, whole_database=not args.run_only, change_data_capture=args.relay == "cdc")
    last: dict[str, Snapshot] = {}

    def probe() -> tuple[bool, str]:
        snap = stages.snapshot(with_views=True)
        last["snap"] = snap
        failing = snap.first_failing_stage(len(run.order_ids))
        progress = (
            f"published {snap.outbox.get('published', 0)}/{snap.expected_events} · "
            f"lag {snap.order_events.lag}+{snap.analytics.lag} · "
            f"ClickHouse {snap.clickhouse_rows}/{len(run.order_ids)} · views "
            + ("ok" if not snap.views_mismatch else "pending")
        )
        return failing is None, progress

    def timed_out() -> StageFailed:
        snap = last["snap"]
        failing = snap.first_failing_stage(len(run.order_ids)) or ("pipeline", "unknown")
        return StageFailed(failing[0], f"{failing[1]} after waiting {args.timeout:.0f}s")

    try:
        waited = wait_for("every stage", probe, args.timeout, timed_out, interval=args.poll)
    finally:
        watcher.stop()
    latencies = [
        max(0.0, watcher.first_seen[(oid, version)] - updated.timestamp())
        for oid, (version, updated) in stages.mysql_versions.items()
        if (oid, version) in watcher.first_seen
    ]
    if args.relay == "cdc":
        # The watermark is the oldest unpublished outbox row's commit time, and a change data
        # capture relay marks no row published (README, "Debezium as the relay").
        print("freshness watermark: not checked (a change data capture relay marks no outbox row published)")
    else:
        check_watermark(api, stages, args.timeout)
    print_summary(last["snap"], run, latencies, waited, not args.run_only)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.check_pipeline", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "-n", "--orders", type=positive_int, default=1000, help="orders to create (default 1000)"
    )
    parser.add_argument("--threads", type=positive_int, default=8, help="concurrent API clients (default 8)")
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for ClickHouse (default 180)"
    )
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls (default 0.5)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the generated orders")
    parser.add_argument(
        "--run-only",
        action="store_true",
        help="compare only this run's orders, customers and products; skip the global views "
        "(status, daily, hourly), which equal MySQL only if ClickHouse saw every order of the database",
    )
    parser.add_argument(
        "--relay",
        choices=("outbox", "cdc"),
        default="outbox",
        help="what relays the outbox: our relay, which marks the rows published (default), or change "
        "data capture (Debezium, kafka-connect/debezium-outbox.json), which marks none",
    )
    args = parser.parse_args(argv)
    return run_script(lambda: check(args))


if __name__ == "__main__":
    sys.exit(main())
