"""The fault run's scenarios. Each runs on the live pipeline that scripts/chaos/run.py started and
adds its rows to the table: what was counted, the count, what it must be, and whether it is."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bench.isolation import REPO_DIR, Isolation
from bench.processes import Process, python_role
from bench.workload import Catalogue
from scripts.chaos.topics import check_orders, event_version, read_topic, row_version
from scripts.kafka_cluster import PrivateKafka

# The outage: broker 3 holds partition 2's second replica (see run.py's topic layout).
OUTAGE_BROKER = 3
OUTAGE_PARTITION = 2
PARTITIONS = 3
# Orders the poison records claim to be: far above the run's own, never in MariaDB.
POISON_ORDER_ID = 2_000_000_001
# Accepted by the contract (16 digits before the point) but not by the run's total_amount column,
# which run.py narrows to Decimal(9, 2): ClickHouse refuses the row as bad data.
POISON_TOTAL = "99999999.99"
NESTING = 100_000


@dataclass
class Row:
    scenario: str
    what: str
    count: str
    expected: str
    ok: bool


@dataclass
class Run:
    isolation: Isolation
    cluster: PrivateKafka
    env: dict[str, str]
    catalogue: Catalogue
    clickhouse: Any
    roles: dict[str, Process] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    orders_written: int = 0

    @property
    def bootstrap(self) -> list[str]:
        return self.cluster.bootstrap

    def add(self, scenario: str, what: str, count: object, expected: object, ok: bool | None = None) -> None:
        passed = count == expected if ok is None else ok
        self.rows.append(Row(scenario, what, str(count), str(expected), passed))

    def start_role(self, name: str, args: list[str], **env: str) -> Process:
        self.roles[name] = python_role(name, args, {**self.env, **env}, self.isolation.var_dir / "logs")
        return self.roles[name]

    def check_roles(self) -> None:
        for role in self.roles.values():
            role.check_alive()

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float) -> bool:
        """Polls until `predicate` holds; False after `timeout` (the check then fails, the run
        goes on). A role that died fails the run at once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_roles()
            if predicate():
                return True
            time.sleep(0.25)
        print(f"chaos: {what} not reached within {timeout:.0f}s", flush=True)
        return predicate()


# --- orders ----------------------------------------------------------------------------------------


def orders_create(run: Run, count: int) -> list[int]:
    """`count` orders through the service layer (what POST /api/orders calls)."""
    from orders.services import OrderLine, order_create

    ids = []
    for n in range(count):
        body = run.catalogue.body(run.orders_written + n)
        order = order_create(
            user_id=int(body["user_id"]),  # type: ignore[call-overload]
            lines=[OrderLine(product_id=int(i["product_id"]), quantity=1) for i in body["items"]],  # type: ignore[attr-defined]
            payment_method="CARD",
        )
        ids.append(order.pk)
    run.orders_written += count
    return ids


def partition_of(order_id: int) -> int:
    from outbox.partitions import partition_for_key

    return partition_for_key(str(order_id).encode(), PARTITIONS)


def published(order_ids: list[int]) -> int:
    from outbox.models import OutboxEvent, OutboxStatus

    return OutboxEvent.objects.filter(
        aggregate_id__in=[str(i) for i in order_ids], status=OutboxStatus.PUBLISHED
    ).count()


def all_published(order_ids: list[int]) -> bool:
    from outbox.models import OutboxEvent

    return (
        published(order_ids)
        == OutboxEvent.objects.filter(aggregate_id__in=[str(i) for i in order_ids]).count()
    )


def commit_to_ack_ms(order_ids: list[int]) -> float:
    """Median time from the outbox row's commit to its marking after Kafka's ack."""
    from outbox.models import OutboxEvent

    rows = OutboxEvent.objects.filter(
        aggregate_id__in=[str(i) for i in order_ids], published_at__isnull=False
    ).values_list("created_at", "published_at")
    values = [(done - created).total_seconds() * 1000 for created, done in rows if done is not None]
    return round(statistics.median(values), 0) if values else float("nan")


def in_clickhouse(run: Run, order_ids: list[int]) -> int:
    if not order_ids:
        return 0
    ids = ",".join(map(str, order_ids))
    result = run.clickhouse.query(f"SELECT count() FROM analytics.active_orders WHERE order_id IN ({ids})")
    return int(result.result_rows[0][0])


# --- 1. poison -----------------------------------------------------------------------------------


def _refused_value(template: dict[str, Any]) -> bytes:
    """A valid envelope of an order that does not exist, with a total the warehouse refuses."""
    payload = dict(template["payload"])
    payload.update(order_id=POISON_ORDER_ID, version=1, total_amount=POISON_TOTAL)
    payload["payment"] = dict(payload["payment"], amount=POISON_TOTAL)
    envelope = dict(
        template,
        event_id=str(uuid.uuid4()),
        event_type="OrderCreated",
        aggregate_id=str(POISON_ORDER_ID),
        aggregate_version=1,
        payload=payload,
    )
    return json.dumps(envelope).encode()


def poison_records(template: dict[str, Any]) -> list[tuple[str, bytes, bytes]]:
    """(kind it must be dead-lettered as, key, value)."""
    wrong_version = dict(template, event_id=str(uuid.uuid4()), aggregate_version="one")
    # Values that once passed validation and then stopped a consumer or were stored altered: a total
    # beyond Decimal(18, 2), and a timestamp whose UTC value falls before year 1.
    huge_total = dict(template, event_id=str(uuid.uuid4()))
    huge_total["payload"] = dict(template["payload"], total_amount="1E+30")
    year_zero = dict(template, event_id=str(uuid.uuid4()), occurred_at="0001-01-01T00:00:00+01:00")
    return [
        ("invalid_event", b"poison-json", b"{not json"),
        ("invalid_event", template["aggregate_id"].encode(), json.dumps(wrong_version).encode()),
        ("invalid_event", template["aggregate_id"].encode(), json.dumps(huge_total).encode()),
        ("invalid_event", template["aggregate_id"].encode(), json.dumps(year_zero).encode()),
        # Skipping an unknown field this deep exhausts the decoder's recursion limit.
        ("invalid_event", b"poison-deep", b'{"x":' + b"[" * NESTING + b"]" * NESTING + b"}"),
        ("refused_by_target", str(POISON_ORDER_ID).encode(), _refused_value(template)),
    ]


def dead_letter_kinds(run: Run) -> dict[str, int]:
    """Dead letters of this run's topics by kind, as the consumers counted them for /metrics."""
    import redis
    from django.conf import settings

    from consumers.metrics import dead_letter_counts

    topics = {f"{run.env['ORDER_EVENTS_TOPIC']}.dlq", f"{run.env['ANALYTICS_TOPIC']}.dlq"}
    counts: dict[str, int] = {}
    client = redis.Redis.from_url(settings.OUTBOX_REDIS_URL)
    try:
        for (topic, kind), count in dead_letter_counts(client).items():
            if topic in topics:
                counts[kind] = counts.get(kind, 0) + count
    finally:
        client.close()
    return counts


def scenario_poison(run: Run, orders: int) -> tuple[list[int], list[int]]:
    """Returns the orders written before and after the poison."""
    from kafka import KafkaProducer

    from outbox.envelope import envelope_of
    from outbox.models import OutboxEvent

    name = "1 poison"
    before = orders_create(run, orders)
    run.wait("first orders published", lambda: published(before) == orders, 60)
    run.add(name, "orders published before the poison", published(before), orders)
    template = envelope_of(OutboxEvent.objects.get(aggregate_id=str(before[0]), aggregate_version=1))
    poison = poison_records(template)
    producer = KafkaProducer(bootstrap_servers=run.bootstrap, acks="all", max_request_size=1_048_576)
    try:
        for _, key, value in poison:
            producer.send(run.env["ORDER_EVENTS_TOPIC"], key=key, value=value).get(timeout=30)
    finally:
        producer.close(timeout=10)
    after = orders_create(run, orders)
    flowing = before + after
    expected: dict[str, int] = {}
    for kind, _, _ in poison:
        expected[kind] = expected.get(kind, 0) + 1
    run.wait("dead letters counted", lambda: dead_letter_kinds(run) == expected, 60)
    run.wait("orders in ClickHouse", lambda: in_clickhouse(run, flowing) == len(flowing), 60)
    kinds = dead_letter_kinds(run)
    for kind, count in expected.items():
        run.add(name, f"dead-lettered as {kind}", kinds.get(kind, 0), count)
    run.add(name, "poison rows in ClickHouse", in_clickhouse(run, [POISON_ORDER_ID]), 0)
    arrived = in_clickhouse(run, flowing)
    run.add(name, "orders written around the poison, in ClickHouse", arrived, len(flowing))
    reasons = dead_letter_reasons(run)
    for reason in reasons:
        print(f"chaos: dead letter: {reason}", flush=True)
    run.add(name, "dead letters carrying a reason", sum(1 for r in reasons if r), len(poison))
    return before, after


def dead_letter_reasons(run: Run) -> list[str]:
    reasons = []
    for topic in (f"{run.env['ORDER_EVENTS_TOPIC']}.dlq", f"{run.env['ANALYTICS_TOPIC']}.dlq"):
        for record in read_topic(run.bootstrap, topic):
            headers = {name: value.decode(errors="replace") for name, value in record.headers}
            reasons.append(f"{headers.get('reason_kind', '?')}: {headers.get('reason', '')[:150]}")
    return reasons


# --- 2. partition outage -------------------------------------------------------------------------


def scenario_outage(run: Run, orders: int, baseline_ms: float) -> None:
    from outbox.models import OutboxEvent, OutboxStatus

    name = "2 outage"

    def healthy_of(ids: list[int]) -> list[int]:
        return [i for i in ids if partition_of(i) != OUTAGE_PARTITION]

    started = time.monotonic()
    run.cluster.stop_node(OUTAGE_BROKER)
    print(f"chaos: broker {OUTAGE_BROKER} stopped in {time.monotonic() - started:.0f}s", flush=True)
    try:
        # Written at once: the relay learns of the outage from these orders' sends.
        first = orders_create(run, orders)
        stopped = time.monotonic()
        run.wait("the partition's ISR to shrink", lambda: not partition_takes_writes(run), 60)
        shrink = round(time.monotonic() - stopped, 1)
        run.add(name, "seconds until metadata shows the partition out", shrink, "reported", ok=True)
        run.wait("healthy orders published", lambda: all_published(healthy_of(first)), 90)
        # The first sends after the relay found the partition out can still wait out a whole
        # flush (README, "Fault run"): these orders show it, the next ones must not.
        recovering = orders_create(run, max(3, orders // 3))
        run.wait("healthy orders published", lambda: all_published(healthy_of(recovering)), 90)
        second = orders_create(run, orders)
        run.wait("healthy orders published", lambda: all_published(healthy_of(second)), 60)
        time.sleep(3)  # a few more relay rounds against the partition that is still out
        written = first + recovering + second
        healthy = healthy_of(written)
        stuck = [i for i in written if i not in healthy]
        waiting = OutboxEvent.objects.filter(aggregate_id__in=[str(i) for i in stuck])
        run.add(name, "healthy orders published during the outage", published(healthy), len(healthy))
        first_ms = commit_to_ack_ms(healthy_of(first))
        run.add(name, "commit->ack median, healthy, as it began (ms)", first_ms, "reported", ok=True)
        recovering_ms = commit_to_ack_ms(healthy_of(recovering))
        run.add(name, "commit->ack median, healthy, next orders (ms)", recovering_ms, "reported", ok=True)
        # No slowdown: a send to the dead partition waits out the 6 s delivery timeout; healthy
        # orders that waited for it would show it.
        second_ms = commit_to_ack_ms(healthy_of(second))
        bound = max(2 * baseline_ms, baseline_ms + 1000)
        fast = second_ms <= bound
        run.add(name, "commit->ack median, healthy, after (ms)", second_ms, f"<= {bound:.0f}", ok=fast)
        run.add(name, "orders on the dead partition", len(stuck), "> 0", ok=bool(stuck))
        run.add(name, "their events published", waiting.filter(status=OutboxStatus.PUBLISHED).count(), 0)
        run.add(name, "attempts charged to them", sum(waiting.values_list("attempts", flat=True)), 0)
        run.add(name, "parked", waiting.filter(status=OutboxStatus.FAILED).count(), 0)
        run.wait("healthy in ClickHouse", lambda: in_clickhouse(run, healthy) == len(healthy), 60)
        run.add(
            name, "healthy orders in ClickHouse during the outage", in_clickhouse(run, healthy), len(healthy)
        )
    finally:
        restarted = time.monotonic()
        run.cluster.start()
        print(f"chaos: broker {OUTAGE_BROKER} back in {time.monotonic() - restarted:.0f}s", flush=True)
    everything = first + recovering + second
    run.wait("everything published", lambda: published(everything) == len(everything), 120)
    run.add(name, "published after the broker's restart", published(everything), len(everything))
    drained = round(time.monotonic() - restarted, 1)
    run.add(name, "seconds from the restart to the last publish", drained, "reported", ok=True)
    records = read_topic(run.bootstrap, run.env["ORDER_EVENTS_TOPIC"])
    check = check_orders(records, {str(i): 1 for i in everything}, event_version, strict=True)
    run.add(name, "duplicates on the topic", check.duplicates, 0)
    run.add(name, "orders missing from the topic", check.missing_latest, 0)


def partition_takes_writes(run: Run) -> bool:
    """What the cluster's metadata says of the outage partition: a leader and enough replicas in
    sync (min ISR 2)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=run.bootstrap, request_timeout_ms=5000)
    try:
        (topic,) = admin.describe_topics([run.env["ORDER_EVENTS_TOPIC"]])
    finally:
        admin.close()
    state = next(p for p in topic["partitions"] if p["partition_index"] == OUTAGE_PARTITION)
    return bool(state["error_code"] == 0 and state["leader_id"] >= 0 and len(state["isr_nodes"]) >= 2)


# --- 3. lease expiry -----------------------------------------------------------------------------


def _relay_once(run: Run) -> int:
    """Relay B: one `manage.py outbox_relay --once` run; returns what it published."""
    done = subprocess.run(
        [sys.executable, "manage.py", "outbox_relay", "--once"],
        cwd=REPO_DIR, env=run.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"relay B failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return int(done.stdout.split("published=")[1].split()[0])


def scenario_lease(run: Run, orders: int) -> None:
    from django.conf import settings
    from django.utils import timezone

    from orders.services import order_soft_delete, order_status_change
    from outbox.models import OutboxEvent, OutboxStatus
    from outbox.relay import Lease, claim_batch, mark_results, publish_runs

    name = "3 lease"
    run.roles.pop("relay").stop()  # only relays A and B from here on
    ids = orders_create(run, orders)
    for order_id in ids:
        order_status_change(order_id=order_id, status="PAID")
        order_status_change(order_id=order_id, status="SHIPPED")
    relay_a = "chaos-relay-A"
    lease = Lease(relay_a, time.monotonic() + settings.OUTBOX_LEASE_SECONDS)
    runs = claim_batch(relay_id=relay_a, batch_size=10_000)
    topic = run.env["ORDER_EVENTS_TOPIC"]
    # Relay A publishes its first round (every order's v1), then stalls past its lease.
    first_round = publish_runs([r[:1] for r in runs], topic=topic, lease=lease)
    run.add(name, "relay A: claimed, v1..v3 of each order", sum(len(r) for r in runs), 3 * orders)
    run.add(name, "relay A: published before its stall", len(first_round.published), orders)
    stall = time.monotonic()
    mine = OutboxEvent.objects.filter(locked_by=relay_a)

    def lease_ran_out() -> bool:
        return not mine.filter(locked_until__gt=timezone.now()).exists()

    run.wait("relay A's lease to run out", lease_ran_out, 60)
    # Relay B claims the rows whose lease ran out, publishes them, then the orders' next versions.
    by_b = _relay_once(run)
    deleted = ids[: orders // 2]
    for order_id in ids:
        order_status_change(order_id=order_id, status="DELIVERED")
    for order_id in deleted:
        order_soft_delete(order_id=order_id, deleted_by=1)
    by_b += _relay_once(run)
    run.add(name, "relay B: published while A stalled", by_b, 4 * orders + len(deleted))
    # Relay A wakes up and goes on with its runs: v2 and v3, which relay B has published since.
    rest = publish_runs([r[1:] for r in runs if len(r) > 1], topic=topic, lease=lease)
    stalled = round(time.monotonic() - stall, 1)
    lease_seconds = settings.OUTBOX_LEASE_SECONDS
    run.add(name, "relay A: stalled (s)", stalled, f"> {lease_seconds}", ok=stalled > lease_seconds)
    sent_late = len(rest.published) + len(rest.failures)
    run.add(name, "relay A: rows sent after its lease ran out", sent_late, 0)
    first_round.published.extend(rest.published)
    first_round.unsent.extend(rest.unsent)
    mark_results(first_round, relay_id=relay_a)
    pending = OutboxEvent.objects.exclude(status=OutboxStatus.PUBLISHED).filter(
        aggregate_id__in=[str(i) for i in ids]
    )
    run.add(name, "events left unpublished", pending.count(), 0)
    run.start_role("relay", ["manage.py", "outbox_relay"])  # the pipeline as it was, for the totals


def scenario_order(run: Run) -> None:
    """Every order of the run, on both topics: versions in order, the last one the latest."""
    from orders.models import Order

    name = "3 lease"
    versions = {str(pk): version for pk, version in Order.objects.values_list("pk", "version")}
    # The transformer has written every order's latest row once ClickHouse has them all.
    for topic, identify, strict in (
        (run.env["ORDER_EVENTS_TOPIC"], event_version, True),
        (run.env["ANALYTICS_TOPIC"], row_version, False),
    ):
        check = check_orders(read_topic(run.bootstrap, topic), versions, identify, strict=strict)
        label = topic.split(".", 1)[1]
        run.add(name, f"{label}: orders checked", check.orders, len(versions))
        run.add(name, f"{label}: records out of version order", check.out_of_order, 0)
        run.add(name, f"{label}: orders whose latest version is missing", check.missing_latest, 0)
        run.add(name, f"{label}: duplicate records (at-least-once)", check.duplicates, "reported", ok=True)


# --- 4. totals -----------------------------------------------------------------------------------


@dataclass
class Totals:
    lost: int
    stale: int
    resurrected: int
    status_counts: dict[str, int]
    paying: tuple[int, Decimal]


def mariadb_totals() -> tuple[dict[int, int], dict[str, int], tuple[int, Decimal]]:
    from django.db.models import Count, Sum

    from orders.models import Order

    live = Order.objects.filter(deleted_at__isnull=True)
    versions = dict(live.values_list("pk", "version"))
    statuses = {row["status"]: row["n"] for row in live.values("status").annotate(n=Count("pk"))}
    paying = live.exclude(status__in=["CANCELLED", "REFUNDED"])
    revenue = paying.aggregate(s=Sum("total_amount"))["s"] or Decimal(0)
    return versions, statuses, (paying.count(), Decimal(revenue))


def clickhouse_totals(run: Run, versions: dict[int, int]) -> Totals:
    rows = run.clickhouse.query("SELECT order_id, version FROM analytics.active_orders").result_rows
    stored = {int(order_id): int(version) for order_id, version in rows}
    statuses = run.clickhouse.query("SELECT status, orders_count FROM analytics.order_status_mv").result_rows
    daily = run.clickhouse.query("SELECT sum(orders_count), sum(revenue) FROM analytics.daily_sales_mv")
    count, revenue = daily.result_rows[0]
    return Totals(
        lost=sum(1 for pk in versions if pk not in stored),
        stale=sum(1 for pk, version in versions.items() if pk in stored and stored[pk] != version),
        resurrected=sum(1 for pk in stored if pk not in versions),
        status_counts={str(status): int(n) for status, n in statuses},
        paying=(int(count or 0), Decimal(revenue or 0)),
    )


def scenario_totals(run: Run) -> None:
    from orders.models import Order
    from outbox.models import OutboxEvent

    name = "4 totals"
    versions, statuses, paying = mariadb_totals()

    def settled() -> bool:
        totals = clickhouse_totals(run, versions)
        exact = (totals.lost, totals.stale, totals.resurrected) == (0, 0, 0)
        return exact and totals.status_counts == statuses and totals.paying == paying

    run.wait("ClickHouse and its views to match MariaDB", settled, 90)
    totals = clickhouse_totals(run, versions)
    run.add(name, "orders written", Order.objects.count(), run.orders_written)
    run.add(name, "outbox events written", OutboxEvent.objects.count(), "reported", ok=True)
    run.add(name, "live orders in MariaDB", len(versions), "reported", ok=True)
    run.add(name, "lost (not in ClickHouse)", totals.lost, 0)
    run.add(name, "stale (older version in ClickHouse)", totals.stale, 0)
    run.add(name, "deleted orders back in ClickHouse", totals.resurrected, 0)
    counted = sum(totals.status_counts.values())
    same = totals.status_counts == statuses
    run.add(name, "double-counted in order_status_mv", counted - len(versions), 0, ok=same)
    run.add(name, "double-counted in daily_sales_mv (orders)", totals.paying[0] - paying[0], 0)
    run.add(name, "daily_sales_mv revenue minus MariaDB's", totals.paying[1] - paying[1], Decimal(0))
