"""Property: whatever the history of creates, status changes and deletes, and however it is
delivered (duplicates, reordering across orders, replays from an earlier offset, any batching),
every view equals the ground truth computed from the final state of the orders."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.sink import ClickHouseWriter
from consumers.transformer import transform
from contract.events import decode_envelope
from contract.types import OrderStatus
from tests.consumers.factories import (
    Item,
    OrderState,
    actual_views,
    expected_views,
    history,
    kafka_value,
    refresh_views,
)
from warehouse.schema import migrate

STATUSES = sorted(OrderStatus)
PRICES = [Decimal("1.50"), Decimal("9.99"), Decimal("20.00")]


@st.composite
def order_histories(draw: st.DrawFn, order_id: int) -> list[dict[str, Any]]:
    created = OrderState(
        order_id=order_id,
        version=1,
        user_id=draw(st.integers(1, 3)),
        status=draw(st.sampled_from(["PENDING", "PAID"])),
        # Few days and hours, so that orders share the groups of the daily and hourly views.
        created_at=datetime(2026, 11, 18, tzinfo=UTC)
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
        refresh_views(clickhouse_client, database)

        expected = expected_views(events)
        assert actual_views(clickhouse_client, database, "_live") == expected
        assert actual_views(clickhouse_client, database, "_mv") == expected
    finally:
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
