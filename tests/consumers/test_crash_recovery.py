"""A sink or transformer killed with SIGKILL mid-batch (after its write, before its commit) and
restarted: no order is lost and none is counted twice. The sink runs as a real subprocess with its own chDB
directory; another short subprocess reads that directory afterwards (one chDB engine per process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from consumers.sink import build_sink
from tests.consumers.factories import (
    actual_views,
    base_order,
    expected_views,
    history,
)
from tests.consumers.kafka_helpers import (
    committed_offsets,
    consumer_settings,
    drive,
    end_offsets,
    event_records,
    fully_committed,
    produce,
    produce_analytics,
    read_topic,
)
from warehouse.schema import migrate

REPO = Path(__file__).resolve().parents[2]


def consumer_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CONSUMER_CRASH_AFTER_WRITES"}
    env.update(values)
    return env


def run_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "consumers", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_sink_killed_between_insert_and_commit_loses_nothing_and_counts_nothing_twice(
    kafka_bootstrap: list[str], make_topic: Any, kafka_group: str, tmp_path: Path
) -> None:
    topic = make_topic("orders-analytics")
    env = consumer_env(
        KAFKA_BOOTSTRAP_SERVERS=",".join(kafka_bootstrap),
        ANALYTICS_TOPIC=topic,
        ANALYTICS_DLQ_TOPIC=make_topic("orders-analytics-dlq", partitions=1),
        SINK_GROUP_ID=kafka_group,
        CLICKHOUSE_URL=f"chdb://{tmp_path / 'chdb'}",
        CLICKHOUSE_DATABASE="analytics",
        CONSUMER_BATCH_SIZE="10",
        CONSUMER_BATCH_SECONDS="0.5",
        CONSUMER_SESSION_TIMEOUT_MS="6000",  # the killed member's partitions move on sooner
    )
    run_cli(env, "migrate")
    events = []
    for order_id in range(1, 31):
        deleted_at = datetime.now(UTC) - timedelta(hours=2) if order_id % 6 == 0 else None
        events += history(base_order(order_id, user_id=order_id % 4 + 1), ["PAID"], deleted_at)
    produce_analytics(kafka_bootstrap, topic, events)

    crashing = subprocess.run(
        [sys.executable, "-m", "consumers", "sink"],
        cwd=REPO,
        env={**env, "CONSUMER_CRASH_AFTER_WRITES": "2"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashing.returncode == -signal.SIGKILL, crashing.stderr
    committed = sum(committed_offsets(kafka_bootstrap, kafka_group, topic).values())
    assert committed < sum(end_offsets(kafka_bootstrap, topic).values())  # the last write is uncommitted

    restarted = subprocess.Popen(
        [sys.executable, "-m", "consumers", "sink"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        while not fully_committed(kafka_bootstrap, kafka_group, topic):
            if time.monotonic() > deadline or restarted.poll() is not None:
                pytest.fail("the restarted sink did not commit every record")
            time.sleep(0.5)
    finally:
        restarted.send_signal(signal.SIGTERM)
        _, stderr = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, stderr  # a clean shutdown on SIGTERM
    assert "sink stopped" in stderr

    expected = expected_views(events)["order_status"]
    assert sum(count for count, _ in expected.values()) == 25
    for view in ("order_status_live", "order_status_mv"):
        output = run_cli(
            env,
            "query",
            f"SELECT status, orders_count, total_amount FROM analytics.{view} ORDER BY status",
        )
        actual = {
            status: (int(count), Decimal(total))
            for status, count, total in (line.split("\t") for line in output.splitlines())
        }
        assert actual == expected, view


def test_a_transformer_killed_between_produce_and_commit_loses_nothing_and_counts_nothing_twice(
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
    env = consumer_env(
        KAFKA_BOOTSTRAP_SERVERS=",".join(kafka_bootstrap),
        ORDER_EVENTS_TOPIC=settings.order_events_topic,
        ANALYTICS_TOPIC=settings.analytics_topic,
        ORDER_EVENTS_DLQ_TOPIC=settings.order_events_dlq_topic,
        TRANSFORMER_GROUP_ID=settings.transformer_group_id,
        CONSUMER_BATCH_SIZE="10",
        CONSUMER_BATCH_SECONDS="0.5",
        CONSUMER_SESSION_TIMEOUT_MS="6000",
    )
    events = []
    for order_id in range(1, 21):
        deleted_at = datetime.now(UTC) - timedelta(hours=2) if order_id % 5 == 0 else None
        events += history(base_order(order_id, user_id=order_id % 3 + 1), ["SHIPPED"], deleted_at)
    produce(kafka_bootstrap, settings.order_events_topic, event_records(events))

    crashing = subprocess.run(
        [sys.executable, "-m", "consumers", "transformer"],
        cwd=REPO,
        env={**env, "CONSUMER_CRASH_AFTER_WRITES": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashing.returncode == -signal.SIGKILL, crashing.stderr
    assert (
        committed_offsets(kafka_bootstrap, settings.transformer_group_id, settings.order_events_topic) == {}
    )
    produced_before_restart = len(read_topic(kafka_bootstrap, settings.analytics_topic))
    assert produced_before_restart > 0  # written but not committed: these will come again

    restarted = subprocess.Popen(
        [sys.executable, "-m", "consumers", "transformer"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not fully_committed(
            kafka_bootstrap, settings.transformer_group_id, settings.order_events_topic
        ):
            if time.monotonic() > deadline or restarted.poll() is not None:
                pytest.fail("the restarted transformer did not commit every event")
            time.sleep(0.5)
    finally:
        restarted.send_signal(signal.SIGTERM)
        _, stderr = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, stderr

    rows = read_topic(kafka_bootstrap, settings.analytics_topic)
    assert len(rows) == len(events) + produced_before_restart  # the uncommitted batch came twice
    assert {(r.key, dict(r.headers)["version"]) for r in rows} == {
        (e["aggregate_id"].encode(), str(e["aggregate_version"]).encode()) for e in events
    }

    migrate(clickhouse_client, clickhouse_database)
    sink, consumer, producer = build_sink(settings, client=clickhouse_client)
    try:
        drive(
            [sink.step],
            lambda: fully_committed(kafka_bootstrap, settings.sink_group_id, settings.analytics_topic),
            timeout=60,
            what="the sink committing every analytics row",
        )
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)
    expected = expected_views(events)
    assert sum(count for count, _ in expected["order_status"].values()) == 16
    assert actual_views(clickhouse_client, clickhouse_database, "_live") == expected
    assert actual_views(clickhouse_client, clickhouse_database, "_mv") == expected
