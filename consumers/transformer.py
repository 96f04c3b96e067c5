"""The transformer: `order.events` → validate → analytics row → `orders_analytics`, keyed by
order id. Offsets are committed only after every produced row was acknowledged by all in-sync
replicas."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from consumers.kafka_io import SEND_TIMEOUT_SECONDS, DeadLetterQueue, make_consumer, make_producer
from consumers.retry import with_retries
from consumers.runner import BatchingConsumer
from consumers.settings import ConsumerSettings
from consumers.views import partition_of
from consumers.watermark import OCCURRED_AT_HEADER
from contract.events import Envelope, InvalidEvent, decode_envelope
from contract.rows import AnalyticsRow, encode_row


class Transformed(NamedTuple):
    row: AnalyticsRow
    # The event's commit time rides along in a header, for the freshness watermark.
    occurred_at: datetime
    # The customer, which decides the partition (a delete row does not carry it).
    user_id: int


def transform(event: Envelope) -> AnalyticsRow:
    """The pure step: a validated event to the analytics row of the order's state after it. A
    soft delete is the only way out, and its row carries only what honouring it needs."""
    order = event.payload
    if order.deleted_at is not None:
        return AnalyticsRow(
            schema_version=1,
            order_id=order.order_id,
            order_date=order.created_at.date(),
            version=event.aggregate_version,
            event_type=event.event_type,
            deleted_at=order.deleted_at,
            is_deleted=True,
        )
    return AnalyticsRow(
        schema_version=1,
        order_id=order.order_id,
        user_id=order.user_id,
        user_email=order.user_email,
        order_date=order.created_at.date(),  # created_at is UTC once decoded
        total_amount=order.total_amount,
        items_count=order.items_count,
        status=order.status,
        payment_method=order.payment.method,
        payment_status=order.payment.status,
        created_at=order.created_at,
        version=event.aggregate_version,
        event_type=event.event_type,
        deleted_at=None,
        is_deleted=False,
        items=order.items,
    )


def decode_order_event(record: ConsumerRecord) -> Transformed:
    event = decode_envelope(record.value)
    row = transform(event)
    # The key decides the partition, and so the per-order ordering: it must be the order id.
    if record.key is not None and record.key != str(row.order_id).encode():
        raise InvalidEvent("record key must be the order id")
    return Transformed(row, event.occurred_at, event.payload.user_id)


class AnalyticsRowProducer:
    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def write(self, items: Sequence[Transformed]) -> None:
        # Routed by customer, keyed by order: an order's rows stay in one partition, in order, and
        # compaction keeps its latest; a customer's rows share a partition too, so the incremental
        # views keep each customer's cells with one writer (consumers/views.py).
        partitions = len(self._producer.partitions_for(self._topic))
        futures = [
            self._producer.send(
                self._topic,
                key=str(row.order_id).encode(),
                partition=partition_of(user_id, partitions),
                value=encode_row(row),
                headers=[
                    ("event_type", row.event_type.encode()),
                    ("version", str(row.version).encode()),
                    (OCCURRED_AT_HEADER, occurred_at.isoformat().encode()),
                ],
            )
            for row, occurred_at, user_id in items
        ]
        self._producer.flush(timeout=SEND_TIMEOUT_SECONDS)
        for future in futures:
            future.get(timeout=SEND_TIMEOUT_SECONDS)  # raises if any record was not acknowledged


def build_transformer(
    settings: ConsumerSettings, stop_event: threading.Event | None = None
) -> tuple[BatchingConsumer[Transformed], KafkaConsumer, KafkaProducer]:
    stop_event = stop_event or threading.Event()
    producer = make_producer(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="transformer")
    consumer = make_consumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        session_timeout_ms=settings.session_timeout_ms,
        group_id=settings.transformer_group_id,
        client_id="transformer",
    )
    sink = AnalyticsRowProducer(producer, settings.analytics_topic)
    loop = BatchingConsumer(
        consumer=consumer,
        topic=settings.order_events_topic,
        decode=decode_order_event,
        write=with_retries(sink.write, stop_event=stop_event, what="producing analytics rows"),
        dead_letters=DeadLetterQueue(
            producer, settings.order_events_dlq_topic, settings.dead_letter_counter()
        ),
        max_batch_size=settings.batch_size,
        max_batch_seconds=settings.batch_seconds,
        min_write_interval=settings.min_write_interval,
        stop_event=stop_event,
        dead_letter_limit=settings.dead_letter_limit(),
    )
    return loop, consumer, producer
