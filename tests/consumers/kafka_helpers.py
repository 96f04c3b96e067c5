"""Real-Kafka helpers for the consumer tests: produce records, read a topic back, compare a
group's committed offsets with the topic's end, and drive consumer loops until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumers.kafka_io import DeadLetterQueue, make_consumer, make_producer
from consumers.settings import ConsumerSettings
from tests.consumers.factories import kafka_headers, kafka_value

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


@dataclass(frozen=True)
class LoopClients:
    """What a consumer loop under test reads from and dead-letters to."""

    topic: str
    consumer: KafkaConsumer
    dead_letters: DeadLetterQueue


def loop_clients(
    closing: ExitStack,
    make_topic: Callable[..., str],
    bootstrap: list[str],
    group: str,
    name: str,
    *,
    partitions: int = 1,
    session_timeout_ms: int = 6000,
) -> LoopClients:
    """A fresh topic and its dead-letter topic, a group consumer and the dead-letter producer;
    `closing` closes both clients when the test ends."""
    topic, dlq = make_topic(name, partitions=partitions), make_topic(f"{name}-dlq", partitions=1)
    consumer = make_consumer(
        bootstrap_servers=bootstrap, group_id=group, client_id=name, session_timeout_ms=session_timeout_ms
    )
    closing.callback(consumer.close, autocommit=False)
    producer = make_producer(bootstrap_servers=bootstrap, client_id=f"{name}-dlq")
    closing.callback(producer.close, timeout=10)
    counter = ConsumerSettings.from_env().dead_letter_counter()
    return LoopClients(topic, consumer, DeadLetterQueue(producer, dlq, counter))


def event_records(events: Iterable[dict[str, Any]]) -> list[Record]:
    """Records as the relay publishes them: key = order id, the envelope, and its headers."""
    return [(e["aggregate_id"].encode(), kafka_value(e), kafka_headers(e)) for e in events]


def produce(
    bootstrap: list[str],
    topic: str,
    records: Iterable[Record],
    partitions: Iterable[int | None] | None = None,
) -> None:
    """The records, each to the partition given for it, or to its key's (Kafka's default)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    records = list(records)
    chosen = list(partitions) if partitions is not None else [None] * len(records)
    try:
        futures = [
            producer.send(topic, key=k, value=v, headers=h, partition=p)
            for (k, v, h), p in zip(records, chosen, strict=True)
        ]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=10)


def produce_analytics(bootstrap: list[str], topic: str, events: Iterable[dict[str, Any]]) -> None:
    """The events' analytics rows as the transformer publishes them: keyed by order id, routed by
    the customer's id (consumers/views.py needs a customer's rows in one partition)."""
    from consumers.transformer import transform
    from consumers.views import partition_of
    from contract.events import decode_envelope
    from contract.rows import encode_row

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        partitions = len(producer.partitions_for(topic))
        futures = []
        for event in events:
            row = transform(decode_envelope(kafka_value(event)))
            futures.append(
                producer.send(
                    topic,
                    key=str(row.order_id).encode(),
                    value=encode_row(row),
                    partition=partition_of(event["payload"]["user_id"], partitions),
                )
            )
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=10)


def read_topic(bootstrap: list[str], topic: str, timeout: float = 20.0) -> list[Any]:
    """Every record currently in the topic."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                pytest.fail(f"could not read {topic} to its end within {timeout}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: list[str], topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: list[str], group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets per partition (read without joining the group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        committed = {tp.partition: consumer.committed(tp) for tp in partitions}
        return {partition: offset for partition, offset in committed.items() if offset is not None}
    finally:
        consumer.close(autocommit=False)


def fully_committed(bootstrap: list[str], group: str, topic: str) -> bool:
    ends = {p: o for p, o in end_offsets(bootstrap, topic).items() if o > 0}
    return committed_offsets(bootstrap, group, topic) == ends


def drive(steps: list[Callable[[], None]], done: Callable[[], bool], timeout: float, what: str) -> None:
    """Runs the consumer steps round-robin until `done()`; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout}s")
        for step in steps:
            step()


def consumer_settings(
    bootstrap: list[str],
    *,
    events_topic: str = "unused-order-events",
    analytics_topic: str = "unused-analytics",
    events_dlq: str = "unused-order-events-dlq",
    analytics_dlq: str = "unused-analytics-dlq",
    group: str = "unused-group",
    database: str = "analytics",
    clickhouse_url: str = "chdb://unused",
    batch_size: int = 5,
) -> ConsumerSettings:
    return ConsumerSettings(
        kafka_bootstrap_servers=bootstrap,
        order_events_topic=events_topic,
        analytics_topic=analytics_topic,
        order_events_dlq_topic=events_dlq,
        analytics_dlq_topic=analytics_dlq,
        transformer_group_id=f"{group}-transformer",
        sink_group_id=f"{group}-sink",
        clickhouse_url=clickhouse_url,
        clickhouse_database=database,
        batch_size=batch_size,
        batch_seconds=0.2,
        session_timeout_ms=6000,
    )
