"""One long-lived Kafka producer per process, configured for no loss and per-key order.

acks=all with the idempotent producer: a record counts as sent only once every in-sync replica
has it (min.insync.replicas=2 on the topic), broker-side retries never duplicate or reorder
records of one partition, and up to 5 requests may be in flight per connection while keeping
that order. The producer is created lazily in the process that uses it, so a Celery prefork
child never inherits its parent's sockets.

The relay's producer is librdkafka's (confluent-kafka): it builds, batches and sends records in C,
on threads of its own. kafka-python, which the consumers use, did all of that in Python, and it
was most of the relay's CPU (profiled on a backlog drain: sending took 63 us per event, against
about 15 with librdkafka; see README). RelayProducer gives the relay the small interface it
needs: send() returns a Delivery that says when the broker acknowledged the record or why not.

Probes of unavailable partitions (outbox/partitions.py) go through a second producer of the same
kind: a flush of the relay's own producer waits for every record it holds, and one bound for a dead
partition would make each round wait out the delivery timeout again.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer
from django.conf import settings

# librdkafka's own lines (broker connections coming and going) go through the filter that makes
# one line of a broker outage.
from consumers.kafka_logging import LIBRDKAFKA_LOGGER

logger = logging.getLogger(__name__)

RELAY = "relay"
PROBE = "relay-probe"


# Broker-side trouble, not a property of the record: the relay charges no attempt for these.
_TRANSIENT_CODES = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._DESTROY,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
        KafkaError._WAIT_COORD,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._QUEUE_FULL,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.REPLICA_NOT_AVAILABLE,
    }
)


class KafkaSendError(Exception):
    """A record Kafka did not take, named by librdkafka's error code (e.g. MSG_SIZE_TOO_LARGE).
    `retriable` says whether the broker is to blame rather than the record."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(f"{error.name()}: {error.str()}")
        self.code = error.code()
        self.retriable = bool(error.retriable()) or self.code in _TRANSIENT_CODES


class Delivery:
    """What became of one sent record, filled in by its delivery report. Reports are served by
    the producer's flush() and poll(); asking whether it is done polls once more."""

    __slots__ = ("_done", "_error", "_producer")

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._done = False
        self._error: KafkaError | None = None

    def __call__(self, error: KafkaError | None, _message: Any) -> None:
        self._done = True
        self._error = error

    @property
    def is_done(self) -> bool:
        if not self._done:
            self._producer.poll(0)
        return self._done

    def succeeded(self) -> bool:
        return self._done and self._error is None

    @property
    def exception(self) -> BaseException | None:
        return None if self._error is None else KafkaSendError(self._error)


class RelayProducer:
    """The relay's producer: send, flush, the topic's partitions, close."""

    def __init__(self, config: dict[str, Any], *, block_seconds: float) -> None:
        self._producer = Producer(config)
        self._block_seconds = block_seconds

    def send(
        self, topic: str, *, key: bytes, value: bytes, headers: list[tuple[str, bytes]], partition: int
    ) -> Delivery:
        """Queues the record; raises KafkaSendError if librdkafka refuses it (too large, unknown
        partition) and TimeoutError if its queue stays full for the blocking time."""
        delivery = Delivery(self._producer)
        deadline = time.monotonic() + self._block_seconds
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    partition=partition,
                    headers=cast(list[tuple[str, str | bytes | None]], headers),
                    on_delivery=delivery,
                )
                return delivery
            except BufferError:  # the local queue is full: let the delivery reports drain it
                if time.monotonic() >= deadline:
                    raise TimeoutError("the producer's queue stayed full") from None
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise KafkaSendError(exc.args[0]) from None

    def flush(self, timeout: float) -> int:
        """Waits until every queued record has its delivery report, at most `timeout` seconds;
        returns how many are still without one."""
        return int(self._producer.flush(timeout))

    def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions, asked of the cluster; raises KafkaSendError when no broker
        answers in the blocking time or the topic is unknown."""
        try:
            metadata = self._producer.list_topics(topic, timeout=self._block_seconds)
        except KafkaException as exc:
            raise KafkaSendError(exc.args[0]) from None
        described = metadata.topics.get(topic)
        if described is None:
            raise KafkaSendError(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        if described.error is not None or not described.partitions:
            raise KafkaSendError(described.error or KafkaError(KafkaError.LEADER_NOT_AVAILABLE))
        return set(described.partitions)

    def close(self, timeout: float) -> None:
        """Drops what was never sent and waits for the reports of what was, at most `timeout`."""
        self._producer.purge(in_queue=True, in_flight=False, blocking=False)
        self._producer.flush(timeout)


def _log_error(error: KafkaError) -> None:
    """librdkafka's error reports (a broker connection lost, all brokers down): logged, since the
    relay sees what they mean for its records in their delivery reports."""
    logging.getLogger(LIBRDKAFKA_LOGGER).warning("%s", error.str())


def producer_build(role: str = RELAY) -> RelayProducer:
    delivery_ms = int(settings.KAFKA_PRODUCER_DELIVERY_TIMEOUT * 1000)
    request_ms = max(1000, min(10_000, delivery_ms // 3))
    config = {
        "bootstrap.servers": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS),
        "client.id": f"outbox-{role}-{os.getpid()}",
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 5,
        # A relay batch goes out in a few requests rather than one per 16 KB.
        "batch.size": 512 * 1024,
        "request.timeout.ms": request_ms,
        "delivery.timeout.ms": delivery_ms,
        "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
        "error_cb": _log_error,
    }
    # send() and the topic's metadata block this long at most; during an outage the relay gives up
    # on the batch instead of hanging per record.
    return RelayProducer(config, block_seconds=min(5.0, delivery_ms / 1000))


_producers: dict[str, tuple[RelayProducer, int]] = {}


def producer_get(role: str = RELAY) -> RelayProducer:
    held = _producers.get(role)
    if held is None or held[1] != os.getpid():
        held = _producers[role] = (producer_build(role), os.getpid())
    return held[0]


def producer_discard(role: str = RELAY) -> None:
    """Drops the process's producer (after a fatal error), so the next batch builds a fresh one."""
    held = _producers.pop(role, None)
    if held is not None and held[1] == os.getpid():
        try:
            held[0].close(timeout=1)
        except Exception:  # closing a broken producer must not hide the error that broke it
            logger.warning("closing the Kafka producer failed", exc_info=True)
