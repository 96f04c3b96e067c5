"""The whole chain on the real Kafka cluster and real chDB: order.events → transformer →
orders_analytics → sink → ClickHouse views, with duplicates, a replay, and poison messages on both
topics that end up in their dead-letter topics while processing continues."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.sink import build_sink
from consumers.transformer import build_transformer
from tests.consumers.factories import actual_views, base_order, expected_views, history
from tests.consumers.kafka_helpers import (
    consumer_settings,
    drive,
    event_records,
    fully_committed,
    produce,
    read_topic,
)
from warehouse.schema import migrate


def order_histories() -> list[list[dict[str, Any]]]:
    rng = random.Random(7)
    statuses = ["PAID", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED"]
    result = []
    for order_id in range(1, 16):
        created = base_order(
            order_id,
            user_id=order_id % 4 + 1,
            created_at=datetime(2026, 11, 20, tzinfo=UTC) + timedelta(hours=order_id % 5, minutes=order_id),
        )
        deleted_at = datetime.now(UTC) - timedelta(minutes=5) if order_id % 4 == 0 else None
        result.append(history(created, rng.sample(statuses, k=rng.randint(0, 2)), deleted_at))
    return result


def test_events_flow_to_exact_views_and_poison_goes_to_the_dead_letter_topics(
    kafka_bootstrap: list[str],
    make_topic: Any,
    kafka_group: str,
    clickhouse_client: Any,
    clickhouse_database: str,
) -> None:
    settings = consumer_settings(
        kafka_bootstrap,
        events_topic=make_topic("order-events"),
        analytics_topic=make_topic("orders-analytics"),
        events_dlq=make_topic("order-events-dlq", partitions=1),
        analytics_dlq=make_topic("orders-analytics-dlq", partitions=1),
        group=kafka_group,
        database=clickhouse_database,
    )
    migrate(clickhouse_client, clickhouse_database)
    per_order = order_histories()
    events = [event for events in per_order for event in events]

    # Orders interleaved (layer by version), each in its own order; then poison; then the whole
    # stream replayed.
    interleaved = sorted(events, key=lambda e: e["aggregate_version"])
    produce(kafka_bootstrap, settings.order_events_topic, event_records(interleaved))
    poison_event = dict(events[0], aggregate_version="one")
    produce(
        kafka_bootstrap,
        settings.order_events_topic,
        [(b"1", b"{not json", []), *event_records([poison_event])],
    )
    produce(kafka_bootstrap, settings.analytics_topic, [(b"9", b"garbage row", [])])
    produce(kafka_bootstrap, settings.order_events_topic, event_records(interleaved))

    transformer, t_consumer, t_producer = build_transformer(settings)
    sink, s_consumer, s_producer = build_sink(settings, client=clickhouse_client)
    try:
        drive(
            [transformer.step, sink.step],
            lambda: (
                fully_committed(kafka_bootstrap, settings.transformer_group_id, settings.order_events_topic)
                and fully_committed(kafka_bootstrap, settings.sink_group_id, settings.analytics_topic)
            ),
            timeout=90,
            what="transformer and sink committing every record",
        )
    finally:
        for closable in (t_consumer, s_consumer):
            closable.close(autocommit=False)
        for producer in (t_producer, s_producer):
            producer.close(timeout=10)

    expected = expected_views(events)
    assert sum(count for count, _ in expected["order_status"].values()) == 12  # 15 orders, 3 deleted
    assert actual_views(clickhouse_client, clickhouse_database, "_live") == expected
    assert actual_views(clickhouse_client, clickhouse_database, "_mv") == expected

    analytics_rows = read_topic(kafka_bootstrap, settings.analytics_topic)
    assert len(analytics_rows) == 2 * len(events) + 1  # every event twice, plus the poison row
    assert all(
        r.key == str(json.loads(r.value)["order_id"]).encode() for r in analytics_rows if r.key != b"9"
    )
    source = {
        (r.partition, r.offset): r.value for r in read_topic(kafka_bootstrap, settings.order_events_topic)
    }

    event_dead_letters = read_topic(kafka_bootstrap, settings.order_events_dlq_topic)
    reasons = sorted(dict(r.headers)["reason"].decode() for r in event_dead_letters)
    assert len(reasons) == 2
    assert reasons[0] == "envelope: Expected `int`, got `str` - at `$.aggregate_version`"
    assert reasons[1].startswith("value is not UTF-8 JSON")
    for record in event_dead_letters:
        headers = dict(record.headers)
        assert headers["source_topic"].decode() == settings.order_events_topic
        position = (int(headers["source_partition"]), int(headers["source_offset"]))
        assert source[position] == record.value  # the header points at the original record

    analytics_dead_letters = read_topic(kafka_bootstrap, settings.analytics_dlq_topic)
    assert [r.value for r in analytics_dead_letters] == [b"garbage row"]
    headers = dict(analytics_dead_letters[0].headers)
    assert headers["reason"].startswith(b"value is not UTF-8 JSON")
    assert headers["source_topic"].decode() == settings.analytics_topic

    # Rebuilding ClickHouse from the analytics topic (a new group, an empty database) gives the
    # same views.
    rebuilt = replace(
        settings,
        sink_group_id=f"{kafka_group}-rebuild",
        clickhouse_database="rebuild_" + uuid.uuid4().hex[:8],
    )
    migrate(clickhouse_client, rebuilt.clickhouse_database)
    try:
        sink, s_consumer, s_producer = build_sink(rebuilt, client=clickhouse_client)
        try:
            drive(
                [sink.step],
                lambda: fully_committed(kafka_bootstrap, rebuilt.sink_group_id, rebuilt.analytics_topic),
                timeout=60,
                what="the rebuild committing every analytics row",
            )
        finally:
            s_consumer.close(autocommit=False)
            s_producer.close(timeout=10)
        assert actual_views(clickhouse_client, rebuilt.clickhouse_database, "_live") == expected
        assert actual_views(clickhouse_client, rebuilt.clickhouse_database, "_mv") == expected
    finally:
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {rebuilt.clickhouse_database} SYNC")


def sink_into_new_database(
    settings: Any, clickhouse_client: Any, kafka_bootstrap: list[str], topic: str, name: str
) -> str:
    """Rebuilds ClickHouse from `topic` as README says: a new sink group from the earliest offset
    into an empty database, whose name it returns (dropped by the caller)."""
    rebuilt = replace(
        settings,
        analytics_topic=topic,
        sink_group_id=f"{settings.sink_group_id}-{name}",
        clickhouse_database=f"{name}_{uuid.uuid4().hex[:8]}",
    )
    migrate(clickhouse_client, rebuilt.clickhouse_database)
    sink, consumer, producer = build_sink(rebuilt, client=clickhouse_client)
    try:
        drive(
            [sink.step],
            lambda: fully_committed(kafka_bootstrap, rebuilt.sink_group_id, topic),
            timeout=60,
            what=f"the {name} committing every analytics row",
        )
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)
    return rebuilt.clickhouse_database


def test_a_deleted_orders_last_row_on_the_topic_has_no_personal_data_and_a_rebuild_honours_it(
    kafka_bootstrap: list[str], make_topic: Any, kafka_group: str, clickhouse_client: Any
) -> None:
    settings = consumer_settings(
        kafka_bootstrap,
        events_topic=make_topic("order-events"),
        analytics_topic=make_topic("orders-analytics", configs={"cleanup.policy": "compact"}),
        events_dlq=make_topic("order-events-dlq", partitions=1),
        analytics_dlq=make_topic("orders-analytics-dlq", partitions=1),
        group=kafka_group,
    )
    deleted_at = datetime.now(UTC) - timedelta(minutes=5)  # inside the 7-day TTL on any day
    gone = history(base_order(1, user_id=11), ["PAID"], deleted_at)
    kept = history(base_order(2, user_id=12), ["PAID"], None)
    produce(kafka_bootstrap, settings.order_events_topic, event_records(gone + kept))

    transformer, consumer, producer = build_transformer(settings)
    try:
        drive(
            [transformer.step],
            lambda: fully_committed(
                kafka_bootstrap, settings.transformer_group_id, settings.order_events_topic
            ),
            timeout=60,
            what="the transformer committing every event",
        )
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)

    # What compaction keeps of each order: its last record.
    last = {r.key: r for r in read_topic(kafka_bootstrap, settings.analytics_topic)}
    delete_row = json.loads(last[b"1"].value)
    assert delete_row == {
        "schema_version": 1,
        "order_id": 1,
        "order_date": "2026-11-20",
        "version": 3,
        "event_type": "OrderDeleted",
        "deleted_at": delete_row["deleted_at"],
        "is_deleted": True,
    }
    assert b"user11@example.com" not in last[b"1"].value
    assert json.loads(last[b"2"].value)["user_email"] == "user12@example.com"

    compacted = make_topic("orders-analytics-compacted", configs={"cleanup.policy": "compact"})
    # A copy keeps every record's partition, as the views need (a customer's rows in one).
    produce(
        kafka_bootstrap,
        compacted,
        [(r.key, r.value, list(r.headers)) for r in last.values()],
        [r.partition for r in last.values()],
    )
    databases = [
        sink_into_new_database(settings, clickhouse_client, kafka_bootstrap, topic, name)
        for topic, name in ((settings.analytics_topic, "rebuild"), (compacted, "compacted_rebuild"))
    ]
    try:
        for database in databases:
            expected = expected_views(gone + kept)
            assert actual_views(clickhouse_client, database, "_live") == expected
            assert actual_views(clickhouse_client, database, "_mv") == expected
            tombstones = clickhouse_client.query(
                f"SELECT order_id, version FROM {database}.order_tombstones"
            ).result_rows
            assert [(int(order_id), int(version)) for order_id, version in tombstones] == [(1, 3)]
        # Rebuilt from the delete row alone, ClickHouse holds the delete and nothing personal.
        stored = clickhouse_client.query(
            f"SELECT version, is_deleted, user_id, user_email, length(item_skus) "
            f"FROM {databases[1]}.orders_analytics WHERE order_id = 1"
        ).result_rows
        assert [tuple(int(v) if not isinstance(v, str) else v for v in row) for row in stored] == [
            (3, 1, 0, "", 0)
        ]
    finally:
        for database in databases:
            clickhouse_client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
