"""The sink while ClickHouse fails for a while: it retries with backoff, commits nothing in the
meantime, keeps its batch, and catches up once ClickHouse answers again. The failure is injected
at the client boundary: a wrapper around the real chDB client that refuses the first inserts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.sink import build_sink
from tests.consumers.factories import actual_views, base_order, expected_views, history
from tests.consumers.kafka_helpers import (
    committed_offsets,
    consumer_settings,
    drive,
    fully_committed,
    produce,
    produce_analytics,
)
from warehouse.schema import migrate


class ClickHouseDown(ConnectionError):
    pass


class FailingInserts:
    """The real client, except that its first `failures` inserts raise; records what the sink's
    consumer group had committed at each failure."""

    def __init__(self, client: Any, failures: int, on_failure: Any) -> None:
        self._client = client
        self.remaining = failures
        self.committed_during_failures: list[dict[int, int]] = []
        self._on_failure = on_failure

    def command(self, cmd: str, **kwargs: Any) -> Any:
        return self._client.command(cmd, **kwargs)

    def query(self, query: str, **kwargs: Any) -> Any:
        return self._client.query(query, **kwargs)

    def raw_query(self, query: str, **kwargs: Any) -> Any:
        return self._client.raw_query(query, **kwargs)

    def _fail_while_down(self) -> None:
        if self.remaining > 0:
            self.remaining -= 1
            self.committed_during_failures.append(self._on_failure())
            raise ClickHouseDown("injected: ClickHouse is unreachable")

    def insert(self, table: str, data: Any, **kwargs: Any) -> Any:
        self._fail_while_down()
        return self._client.insert(table, data, **kwargs)

    def raw_insert(self, table: str, *args: Any, **kwargs: Any) -> Any:
        self._fail_while_down()
        return self._client.raw_insert(table, *args, **kwargs)


def test_the_sink_retries_without_committing_and_catches_up(
    kafka_bootstrap: list[str],
    make_topic: Any,
    kafka_group: str,
    clickhouse_client: Any,
    clickhouse_database: str,
) -> None:
    settings = consumer_settings(
        kafka_bootstrap,
        analytics_topic=make_topic("orders-analytics"),
        analytics_dlq=make_topic("orders-analytics-dlq", partitions=1),
        group=kafka_group,
        database=clickhouse_database,
        batch_size=50,
    )
    migrate(clickhouse_client, clickhouse_database)
    events = []
    for order_id in range(1, 21):
        deleted_at = datetime.now(UTC) - timedelta(hours=1) if order_id % 5 == 0 else None
        events += history(base_order(order_id, user_id=order_id % 3 + 1), ["PAID"], deleted_at)
    produce_analytics(kafka_bootstrap, settings.analytics_topic, events)

    flaky = FailingInserts(
        clickhouse_client,
        failures=5,
        on_failure=lambda: committed_offsets(
            kafka_bootstrap, settings.sink_group_id, settings.analytics_topic
        ),
    )
    sink, consumer, producer = build_sink(settings, client=flaky, retry_initial_delay=0.05)
    try:
        drive(
            [sink.step],
            lambda: fully_committed(kafka_bootstrap, settings.sink_group_id, settings.analytics_topic),
            timeout=60,
            what="the sink committing every record after ClickHouse came back",
        )
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)

    assert flaky.remaining == 0
    assert flaky.committed_during_failures == [{}] * 5  # nothing committed while ClickHouse was down
    compare_views(clickhouse_client, clickhouse_database, events)


def compare_views(client: Any, database: str, events: list[dict[str, Any]]) -> None:
    expected = expected_views(events)
    assert sum(count for count, _ in expected["order_status"].values()) == 16
    assert actual_views(client, database, "_live") == expected
    assert actual_views(client, database, "_mv") == expected


def test_a_write_that_fails_outright_rewinds_so_the_records_are_read_again(
    kafka_bootstrap: list[str], make_topic: Any, kafka_group: str
) -> None:
    """Without retries around it, a failing write drops its batch and rewinds the partitions: the
    next steps read the same records again instead of committing past them."""
    from consumers.kafka_io import DeadLetterQueue, make_consumer, make_producer
    from consumers.runner import BatchingConsumer

    topic = make_topic("rewind", partitions=2)
    produce(kafka_bootstrap, topic, [(str(i).encode(), str(i).encode(), []) for i in range(10)])
    written: list[int] = []
    failures = [RuntimeError("injected write failure")]

    def write(items: Any) -> None:
        if failures:
            raise failures.pop()
        written.extend(items)

    consumer = make_consumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=kafka_group,
        client_id="rewind-test",
        session_timeout_ms=6000,
    )
    producer = make_producer(bootstrap_servers=kafka_bootstrap, client_id="rewind-test")
    loop = BatchingConsumer(
        consumer=consumer,
        topic=topic,
        decode=lambda record: int(record.value),
        write=write,
        dead_letters=DeadLetterQueue(producer, f"{topic}.dlq"),
        max_batch_size=100,
        max_batch_seconds=0.5,
    )
    try:
        failed = False
        deadline = time.monotonic() + 60
        while not fully_committed(kafka_bootstrap, kafka_group, topic):
            assert time.monotonic() < deadline, "the records were not written and committed within 60s"
            try:
                loop.step()
            except RuntimeError:
                failed = True
                assert committed_offsets(kafka_bootstrap, kafka_group, topic) == {}
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)
    assert failed
    assert sorted(written) == list(range(10))
