"""Property: whatever the history of creates, status changes and deletes, and however it is
delivered (duplicates, reordering across orders, replays from an earlier offset, any batching) and
whatever crashes on the way (after the insert and before the commit, between the table's insert and
the views', a member kicked from the group that still writes, a rebuild of all or some days while
the pipeline runs), every view equals the ground truth
computed from the final state of the orders."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.sink import ClickHouseWriter
from consumers.transformer import transform
from consumers.views import Delivered, Plan, differences, partition_of, rebuild
from contract.events import decode_envelope
from contract.types import OrderStatus
from tests.consumers.factories import (
    Item,
    OrderState,
    actual_views,
    base_order,
    expected_views,
    history,
    kafka_value,
)
from warehouse.schema import migrate

STATUSES = sorted(OrderStatus)
FIRST_DAY = date(2026, 11, 18)
PRICES = [Decimal("1.50"), Decimal("9.99"), Decimal("20.00")]


@st.composite
def order_histories(draw: st.DrawFn, order_id: int) -> list[dict[str, Any]]:
    created = OrderState(
        order_id=order_id,
        version=1,
        user_id=draw(st.integers(1, 5)),
        status=draw(st.sampled_from(["PENDING", "PAID"])),
        # Few days and hours, so that orders share the groups of the daily and hourly views.
        created_at=datetime.combine(FIRST_DAY, datetime.min.time(), UTC)
        + timedelta(days=draw(st.integers(0, 2)), hours=draw(st.integers(0, 2)), minutes=order_id),
        items=tuple(
            Item(product_id=draw(st.integers(1, 4)), quantity=draw(st.integers(1, 3)), unit_price=price)
            for price in draw(st.lists(st.sampled_from(PRICES), min_size=1, max_size=3))
        ),
    )
    statuses = draw(st.lists(st.sampled_from(STATUSES), max_size=3))
    deleted_at = datetime.now(UTC) - timedelta(hours=1) if draw(st.booleans()) else None
    return history(created, statuses, deleted_at)


def interleave(per_order: list[list[dict[str, Any]]], rng: random.Random) -> list[dict[str, Any]]:
    """Kafka's guarantee: each order's events in order, orders interleaved in any way."""
    queues = [list(events) for events in per_order]
    delivered = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        delivered.append(queue.pop(0))
    return delivered


def redeliver(delivered: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Duplicates of random events anywhere later, then a replay from a random earlier offset."""
    result = list(delivered)
    for event in rng.sample(delivered, k=rng.randint(0, len(delivered))):
        result.insert(rng.randint(result.index(event), len(result)), event)
    return result + delivered[rng.randint(0, len(delivered)) :]


def batches(items: list[Any], rng: random.Random) -> list[list[Any]]:
    chunks, start = [], 0
    while start < len(items):
        size = rng.randint(1, 6)
        chunks.append(items[start : start + size])
        start += size
    return chunks


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    count = draw(st.integers(1, 8))
    per_order = [draw(order_histories(order_id)) for order_id in range(1, count + 1)]
    rng = draw(st.randoms(use_true_random=False))
    delivered = redeliver(interleave(per_order, rng), rng)
    return [event for events in per_order for event in events], batches(delivered, rng)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=deliveries())
def test_every_view_equals_the_ground_truth_whatever_the_delivery(
    clickhouse_client: Any, case: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]
) -> None:
    events, delivery = case
    database = f"prop_{uuid.uuid4().hex[:12]}"
    # Many small inserts over 30 examples: syncing each to disk would only make the run
    # slower (tests/warehouse/test_durability.py covers the syncs), not the views more exact.
    migrate(clickhouse_client, database, fsync_after_insert=False)
    try:
        writer = ClickHouseWriter(clickhouse_client, database)
        for batch in delivery:
            writer.write([transform(decode_envelope(kafka_value(event))) for event in batch])

        expected = expected_views(events)
        assert actual_views(clickhouse_client, database, "_live") == expected
        assert actual_views(clickhouse_client, database, "_mv") == expected
    finally:
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {database} SYNC")


PARTITIONS = 3


@dataclass
class PartitionLog:
    """One partition of orders_analytics as the transformer leaves it: each order's rows in order,
    some twice (a producer retry appends a record again, at a new offset)."""

    records: list[Delivered] = field(default_factory=list)
    committed: int = 0  # the group's committed offset
    position: int = 0  # where the current owner reads next


def kafka_logs(per_order: list[list[dict[str, Any]]], rng: random.Random) -> list[PartitionLog]:
    logs = [PartitionLog() for _ in range(PARTITIONS)]
    for event in redeliver_in_place(interleave(per_order, rng), rng):
        p = partition_of(event["payload"]["user_id"], PARTITIONS)
        row = transform(decode_envelope(kafka_value(event)))
        logs[p].records.append(Delivered(row, p, len(logs[p].records)))
    return logs


def redeliver_in_place(delivered: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Duplicates right after the original or later: a retried send lands again after it."""
    result = list(delivered)
    for event in rng.sample(delivered, k=rng.randint(0, len(delivered) // 2)):
        result.insert(rng.randint(result.index(event) + 1, len(result)), event)
    return result


CRASHES = ("none", "none", "after_insert", "between_inserts", "kicked_member", "replay", "rebuild")


def consume(
    writer: ClickHouseWriter, logs: list[PartitionLog], rng: random.Random, client: Any, database: str
) -> list[str]:
    """Reads every log to its end in random batches across partitions, as one consumer group would,
    crashing on the way; returns the crashes it went through."""
    crashes: list[str] = []
    zombies: list[tuple[list[Delivered], Plan]] = []
    while any(log.committed < len(log.records) for log in logs) or zombies:
        batch = []
        for log in logs:
            take = rng.randint(0, 4)
            batch += log.records[log.position : log.position + take]
            log.position = min(len(log.records), log.position + take)
        crash = rng.choice(CRASHES)
        if zombies and (rng.random() < 0.4 or not any(log.committed < len(log.records) for log in logs)):
            crashes.append(land_late(writer, *zombies.pop(0)))
        if not batch:
            continue
        write_crashing(writer, batch, crash, zombies)
        if crash == "rebuild":
            crashes.append(rebuild_while_running(client, database, len(logs), rng))
        if crash in ("none", "replay", "rebuild"):
            for log in logs:
                log.committed = log.position
        else:
            crashes.append(crash)
        if crash == "replay":
            log = rng.choice(logs)
            log.committed = rng.randint(0, log.committed)
            crashes.append("replay")
        for log in logs:  # a crash or a rebalance: the next owner reads from the committed offset
            log.position = log.committed
    return crashes


def write_crashing(
    writer: ClickHouseWriter, batch: list[Delivered], crash: str, zombies: list[tuple[list[Delivered], Plan]]
) -> None:
    if crash == "between_inserts":
        writer.store(batch)  # the table has the rows; the views' insert never happens
    elif crash == "kicked_member":
        stored, _ = writer.store(batch)
        plan = writer.views.prepare(stored, writer.views.wait_for_epoch())
        assert plan is not None
        zombies.append((stored, plan))  # computed, not yet written: the member stalls here
    else:
        writer.write(batch)


def land_late(writer: ClickHouseWriter, stored: list[Delivered], plan: Plan) -> str:
    """The kicked member's write lands late, after the new owner went on."""
    writer.store(stored)
    writer.views.commit(plan)
    return "late write of a kicked member"


def rebuild_while_running(client: Any, database: str, partitions: int, rng: random.Random) -> str:
    """A rebuild of everything or of some days while the pipeline runs: a kicked member's write may
    still land after it, in the old epoch."""
    if rng.random() < 0.5:
        rebuild(client, database, partitions)
        return "rebuild"
    first = FIRST_DAY + timedelta(days=rng.randint(0, 2))
    rebuild(client, database, partitions, (first, first + timedelta(days=rng.randint(0, 2))))
    return "rebuild of some days"


@st.composite
def crash_cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[PartitionLog], random.Random]:
    count = draw(st.integers(1, 10))
    per_order = [draw(order_histories(order_id)) for order_id in range(1, count + 1)]
    rng = draw(st.randoms(use_true_random=False))
    return [event for events in per_order for event in events], kafka_logs(per_order, rng), rng


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
)
@given(case=crash_cases())
def test_the_incremental_views_stay_exact_through_crashes_redelivery_and_a_kicked_member(
    clickhouse_client: Any, case: tuple[list[dict[str, Any]], list[PartitionLog], random.Random]
) -> None:
    events, logs, rng = case
    database = f"prop_{uuid.uuid4().hex[:12]}"
    migrate(clickhouse_client, database, fsync_after_insert=False)
    try:
        writer = ClickHouseWriter(clickhouse_client, database, partitions=lambda: PARTITIONS)
        consume(writer, logs, rng, clickhouse_client, database)

        expected = expected_views(events)
        assert actual_views(clickhouse_client, database, "_live") == expected
        assert actual_views(clickhouse_client, database, "_mv") == expected
        assert differences(clickhouse_client, database) == []
        # A rebuild from the table, with the pipeline's state there, changes nothing, and a replay
        # of every partition from the start after it counts nothing twice.
        rebuild(clickhouse_client, database, PARTITIONS)
        for log in logs:
            writer.write(log.records)
        assert actual_views(clickhouse_client, database, "_mv") == expected
    finally:
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {database} SYNC")


def test_a_recreated_analytics_topic_starting_again_at_offset_0_is_applied_and_counts_nothing_twice(
    clickhouse_client: Any,
) -> None:
    rng = random.Random(7)
    per_order = [
        history(base_order(order_id, user_id=order_id % 4 + 1), rng.sample(STATUSES, k=2), None)
        for order_id in range(1, 13)
    ]
    events = [event for events in per_order for event in events]
    database = f"prop_{uuid.uuid4().hex[:12]}"
    migrate(clickhouse_client, database, fsync_after_insert=False)
    try:
        writer = ClickHouseWriter(clickhouse_client, database, partitions=lambda: PARTITIONS)
        logs = kafka_logs(per_order, rng)
        # The old topic had gone far: its records of the first half of each partition, at offsets
        # from 1000. Then the topic is recreated and the sink reads the new one from offset 0.
        for log in logs:
            old = log.records[: len(log.records) // 2]
            writer.write(
                [Delivered(r.row, r.partition, 1000 + r.offset, "old") for r in old if r.offset is not None]
            )
        for log in logs:
            writer.write([Delivered(r.row, r.partition, r.offset, "new") for r in log.records])
        expected = expected_views(events)
        assert actual_views(clickhouse_client, database, "_mv") == expected
        assert differences(clickhouse_client, database) == []
    finally:
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
