"""Poison never stops a consumer: rows ClickHouse refuses as bad data are isolated and
dead-lettered while the rest of their batch is written, an unexpected error on one record
dead-letters that record, a value nested too deeply to decode is an invalid event, a commit
refused mid-rebalance drops the batch for redelivery, and a runaway of dead letters stops the
loop with a clear message before it drains the topic."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import RebalanceInProgressError

from consumers.dead_letters import DeadLetterLimit, DeadLetterRunaway
from consumers.runner import BatchingConsumer, Rejection
from consumers.sink import ClickHouseWriter, build_sink
from consumers.transformer import build_transformer, transform
from contract.events import decode_envelope
from contract.rows import encode_row
from outbox.metrics import DeadLetterCollector
from tests.consumers.factories import base_order, history, kafka_headers, kafka_value
from tests.consumers.kafka_helpers import (
    committed_offsets,
    consumer_settings,
    drive,
    fully_committed,
    loop_clients,
    produce,
    read_topic,
)
from warehouse.schema import migrate

# --- the sink's write, on real chDB --------------------------------------------------------------


def _rows(count: int) -> list[Any]:
    return [
        transform(decode_envelope(kafka_value(history(base_order(n), [], None)[0])))
        for n in range(1, count + 1)
    ]


def test_rows_clickhouse_refuses_as_bad_data_are_isolated_and_the_rest_is_written(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    migrate(clickhouse_client, clickhouse_database)
    rows = _rows(10)
    # Built past the contract's decoder, as a future schema or a bug could: ClickHouse refuses
    # both (Decimal value is too big; not a number), and once retried the whole batch for ever.
    rows[3] = msgspec.structs.replace(rows[3], total_amount="1E+30")
    rows[7] = msgspec.structs.replace(rows[7], total_amount="abc")

    rejected = ClickHouseWriter(clickhouse_client, clickhouse_database).write(rows)

    assert [index for index, _ in rejected] == [3, 7]
    assert "code 69" in rejected[0][1] and "Decimal value is too big" in rejected[0][1]
    assert "code 27" in rejected[1][1]
    stored = clickhouse_client.query(
        f"SELECT order_id FROM {clickhouse_database}.orders_analytics ORDER BY order_id"
    ).result_rows
    assert [order_id for (order_id,) in stored] == [1, 2, 3, 5, 6, 7, 9, 10]


def test_an_unavailable_clickhouse_is_raised_for_a_retry_not_dead_lettered(clickhouse_client: Any) -> None:
    # No such database: not a property of the rows, so nothing may be dead-lettered.
    with pytest.raises(Exception, match=r"UNKNOWN_DATABASE|does not exist"):
        ClickHouseWriter(clickhouse_client, "no_such_database").write(_rows(2))


# --- the consumer loop, on a real broker ---------------------------------------------------------


@dataclass
class Target:
    """The write step: stores values, refuses the ones in `refuse` as bad data."""

    refuse: set[bytes] = field(default_factory=set)
    written: list[bytes] = field(default_factory=list)

    def write(self, items: Sequence[bytes]) -> list[Rejection]:
        self.written.extend(item for item in items if item not in self.refuse)
        return [(i, f"refused {item.decode()}") for i, item in enumerate(items) if item in self.refuse]


@dataclass
class Loop:
    loop: BatchingConsumer[bytes]
    target: Target
    topic: str
    dlq: str
    group: str
    consumer: Any


def _decode(record: ConsumerRecord) -> bytes:
    value = bytes(record.value)
    if value.startswith(b"boom"):
        raise ZeroDivisionError("a bug of ours on this one record")
    return value


@pytest.fixture
def make_loop(
    kafka_bootstrap: list[str], make_topic: Callable[..., str], kafka_group: str
) -> Iterator[Callable[..., Loop]]:
    closing = ExitStack()

    def make(target: Target, limit: DeadLetterLimit | None = None, max_batch_size: int = 1000) -> Loop:
        clients = loop_clients(closing, make_topic, kafka_bootstrap, kafka_group, "poison")
        loop: BatchingConsumer[bytes] = BatchingConsumer(
            consumer=clients.consumer,
            topic=clients.topic,
            decode=_decode,
            write=target.write,
            dead_letters=clients.dead_letters,
            max_batch_size=max_batch_size,
            max_batch_seconds=0.5,
            dead_letter_limit=limit,
        )
        return Loop(loop, target, clients.topic, clients.dead_letters.topic, kafka_group, clients.consumer)

    with closing:
        yield make


def _values(*values: str) -> list[tuple[None, bytes, list[Any]]]:
    return [(None, value.encode(), []) for value in values]


def _reasons(bootstrap: list[str], dlq: str) -> dict[bytes, str]:
    return {
        bytes(record.value): dict(record.headers)["reason"].decode() for record in read_topic(bootstrap, dlq)
    }


def test_an_unexpected_error_and_a_refused_row_are_dead_lettered_and_the_partition_moves_on(
    kafka_bootstrap: list[str], make_loop: Callable[..., Loop]
) -> None:
    run = make_loop(Target(refuse={b"bad"}))
    produce(kafka_bootstrap, run.topic, _values("a", "boom", "b", "bad", "c"))

    drive(
        [run.loop.step],
        lambda: committed_offsets(kafka_bootstrap, run.group, run.topic) == {0: 5},
        60,
        "consuming",
    )

    assert run.target.written == [b"a", b"b", b"c"]
    reasons = _reasons(kafka_bootstrap, run.dlq)
    assert reasons == {
        b"boom": "unexpected ZeroDivisionError: a bug of ours on this one record",
        b"bad": "refused bad",
    }
    kinds = {bytes(r.value): dict(r.headers)["reason_kind"] for r in read_topic(kafka_bootstrap, run.dlq)}
    assert kinds == {b"boom": b"unexpected_error", b"bad": b"refused_by_target"}
    # /metrics counts them by kind of reason (the dead-letter topic is unique to this test).
    (family,) = DeadLetterCollector().collect()
    counted = {tuple(s.labels.values()): s.value for s in family.samples if s.labels["topic"] == run.dlq}
    assert counted == {(run.dlq, "refused_by_target"): 1, (run.dlq, "unexpected_error"): 1}


def test_a_value_nested_too_deeply_to_decode_is_dead_lettered_as_an_invalid_event(
    kafka_bootstrap: list[str],
    make_topic: Callable[..., str],
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
    # 100,000 nested arrays in a field the contract does not know: the decoder skips such a value
    # by recursing into it, deeper than Python's recursion limit.
    nested = b"[" * 100_000 + b"]" * 100_000
    poisoned, event = (history(base_order(n), [], None)[0] for n in (1, 2))
    poisoned_value = kafka_value(poisoned).replace(b'"payload":{', b'"payload":{"notes":' + nested + b",", 1)
    produce(
        kafka_bootstrap,
        settings.order_events_topic,
        [(b"1", poisoned_value, kafka_headers(poisoned)), (b"2", kafka_value(event), kafka_headers(event))],
    )
    row = encode_row(transform(decode_envelope(kafka_value(history(base_order(3), [], None)[0]))))
    poisoned_row = row[:-1] + b',"notes":' + nested + b"}"
    produce(kafka_bootstrap, settings.analytics_topic, [(b"3", poisoned_row, [])])

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
        for consumer in (t_consumer, s_consumer):
            consumer.close(autocommit=False)
        for producer in (t_producer, s_producer):
            producer.close(timeout=10)

    for dlq, what, value in [
        (settings.order_events_dlq_topic, "envelope", poisoned_value),
        (settings.analytics_dlq_topic, "analytics row", poisoned_row),
    ]:
        (dead,) = read_topic(kafka_bootstrap, dlq)
        headers = dict(dead.headers)
        assert headers["reason_kind"] == b"invalid_event", headers["reason"]
        assert headers["reason"].decode() == f"{what}: value nests too deeply to decode"
        assert bytes(dead.value) == value
    # The order after it went on to ClickHouse.
    stored = clickhouse_client.query(
        f"SELECT order_id FROM {clickhouse_database}.orders_analytics ORDER BY order_id"
    ).result_rows
    assert stored == [(2,)]


def test_a_runaway_of_dead_letters_stops_the_loop_before_it_commits_them(
    kafka_bootstrap: list[str], make_loop: Callable[..., Loop]
) -> None:
    run = make_loop(Target(), limit=DeadLetterLimit(max_consecutive=3, max_share=1.0, window=100))
    produce(kafka_bootstrap, run.topic, _values("a", *["boom"] * 10))

    with pytest.raises(DeadLetterRunaway, match="4 records in a row were dead-lettered"):
        drive([run.loop.step], lambda: False, 60, "a runaway")
    run.loop.abandon()

    # Four dead letters, then the stop: nothing of the batch is committed, so a restart after the
    # fix reads all of it again.
    assert len(read_topic(kafka_bootstrap, run.dlq)) == 4
    assert committed_offsets(kafka_bootstrap, run.group, run.topic) == {}


def test_a_commit_refused_while_the_group_rebalances_drops_the_batch_for_redelivery(
    kafka_bootstrap: list[str], make_loop: Callable[..., Loop]
) -> None:
    run = make_loop(Target())
    produce(kafka_bootstrap, run.topic, _values("a", "b"))
    commit = run.consumer.commit
    refused: list[int] = []

    def commit_once_refused(offsets: Any = None) -> None:
        # kafka-python raises this from commit() while it rejoins the group itself.
        if not refused:
            refused.append(1)
            raise RebalanceInProgressError("the group is rebalancing")
        commit(offsets)

    run.consumer.commit = commit_once_refused
    drive(
        [run.loop.step],
        lambda: committed_offsets(kafka_bootstrap, run.group, run.topic) == {0: 2},
        60,
        "consuming",
    )

    assert refused == [1]
    assert run.target.written == [b"a", b"b", b"a", b"b"]  # written twice, committed once


def test_dead_letters_are_listed_by_reason_and_replayed_to_their_source_in_order(
    kafka_bootstrap: list[str], make_loop: Callable[..., Loop]
) -> None:
    run = make_loop(Target(refuse={b"bad"}))
    produce(
        kafka_bootstrap,
        run.topic,
        [(b"7", b"boom-v1", []), (b"8", b"ok", []), (b"7", b"boom-v2", []), (b"9", b"bad", [])],
    )
    drive(
        [run.loop.step],
        lambda: committed_offsets(kafka_bootstrap, run.group, run.topic) == {0: 4},
        60,
        "consuming",
    )

    listed = _consumers_cli("dlq", "list", "--topic", run.dlq, "--records")
    assert "3 of 3 dead letters" in listed
    assert "2  partition 0   unexpected ZeroDivisionError: a bug of ours on this one record" in listed
    assert "1  partition 0   refused bad" in listed

    assert "would replay 2 of 3" in _consumers_cli(
        "dlq", "replay", "--topic", run.dlq, "--reason", "Zero", "--dry-run"
    )
    assert "replayed 2 of 3" in _consumers_cli("dlq", "replay", "--topic", run.dlq, "--reason", "Zero")

    source = [(r.key, bytes(r.value)) for r in read_topic(kafka_bootstrap, run.topic)]
    assert source[4:] == [(b"7", b"boom-v1"), (b"7", b"boom-v2")]  # back in the order set aside


def _consumers_cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "consumers", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- the limit itself ---------------------------------------------------------------------------


def test_the_limit_counts_a_share_of_the_window_and_a_run_in_a_row() -> None:
    share = DeadLetterLimit(max_consecutive=1000, max_share=0.5, window=10)
    for dead in [False, True] * 5:  # half of a full window: at the limit, not past it
        share.record(dead=dead)
    with pytest.raises(DeadLetterRunaway, match="6 of the last 10 records"):
        share.record(dead=True, reason="x")

    in_row = DeadLetterLimit(max_consecutive=2, max_share=1.0, window=10)
    for dead in [True, True, False, True, True]:  # an ok record ends a run
        in_row.record(dead=dead)
    with pytest.raises(DeadLetterRunaway, match="3 records in a row"):
        in_row.record(dead=True)
