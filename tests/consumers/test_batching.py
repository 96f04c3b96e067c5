"""When the consumer loop writes its batch, against a real broker: large batches while a backlog
drains, at once when it has caught up, and no more often than min_write_interval under a trickle."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack

import pytest
from kafka import KafkaProducer

from consumers.runner import BatchingConsumer
from tests.consumers.kafka_helpers import drive, loop_clients, produce


class Recorder:
    """The write step: remembers each batch it was given and when."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.written_at: list[float] = []

    def write(self, items: Sequence[bytes]) -> None:
        self.batches.append(list(items))
        self.written_at.append(time.monotonic())

    @property
    def items(self) -> list[bytes]:
        return [item for batch in self.batches for item in batch]


@pytest.fixture
def make_loop(
    kafka_bootstrap: list[str], make_topic: Callable[..., str], kafka_group: str
) -> Iterator[Callable[..., tuple[BatchingConsumer[bytes], Recorder, str]]]:
    closing = ExitStack()

    def make(
        *, max_batch_size: int, max_batch_seconds: float, min_write_interval: float
    ) -> tuple[BatchingConsumer[bytes], Recorder, str]:
        clients = loop_clients(closing, make_topic, kafka_bootstrap, kafka_group, "batching")
        recorder = Recorder()
        loop: BatchingConsumer[bytes] = BatchingConsumer(
            consumer=clients.consumer,
            topic=clients.topic,
            decode=lambda record: bytes(record.value),
            write=recorder.write,
            dead_letters=clients.dead_letters,
            max_batch_size=max_batch_size,
            max_batch_seconds=max_batch_seconds,
            min_write_interval=min_write_interval,
        )
        return loop, recorder, clients.topic

    with closing:
        yield make


def _values(count: int, start: int = 0) -> list[bytes]:
    return [str(n).encode() for n in range(start, start + count)]


def test_a_backlog_is_written_in_full_batches(
    kafka_bootstrap: list[str], make_loop: Callable[..., tuple[BatchingConsumer[bytes], Recorder, str]]
) -> None:
    loop, recorder, topic = make_loop(max_batch_size=2000, max_batch_seconds=60, min_write_interval=0)
    produce(kafka_bootstrap, topic, [(None, value, []) for value in _values(5000)])

    drive([loop.step], lambda: len(recorder.items) >= 5000, 60, "draining the backlog")

    # Behind, the loop fills batches to their size; only the end of the backlog is written short.
    assert [len(batch) for batch in recorder.batches] == [2000, 2000, 1000]
    assert recorder.items == _values(5000)


def _settle(loop: BatchingConsumer[bytes], seconds: float = 3.0) -> None:
    """Steps past the quick second rebalance that often follows a first join: it revokes the
    partitions and forgets their high watermarks, so "caught up" is unknown for a moment."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        loop.step()


def test_a_caught_up_consumer_writes_at_once_not_after_max_batch_seconds(
    kafka_bootstrap: list[str], make_loop: Callable[..., tuple[BatchingConsumer[bytes], Recorder, str]]
) -> None:
    loop, recorder, topic = make_loop(max_batch_size=10_000, max_batch_seconds=60, min_write_interval=0.2)
    drive([loop.step], lambda: bool(loop._consumer.assignment()), 30, "joining the group")
    _settle(loop)

    produced_at = time.monotonic()
    produce(kafka_bootstrap, topic, [(None, value, []) for value in _values(3)])
    drive([loop.step], lambda: len(recorder.items) == 3, 30, "writing three records")

    assert recorder.written_at[-1] - produced_at < 5  # far below the 60 s batch window
    assert recorder.items == _values(3)


def test_a_trickle_is_written_at_most_once_per_min_write_interval(
    kafka_bootstrap: list[str], make_loop: Callable[..., tuple[BatchingConsumer[bytes], Recorder, str]]
) -> None:
    loop, recorder, topic = make_loop(max_batch_size=10_000, max_batch_seconds=60, min_write_interval=0.5)
    drive([loop.step], lambda: bool(loop._consumer.assignment()), 30, "joining the group")
    _settle(loop)

    def trickle() -> None:  # 40 records, one every 50 ms
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=0)
        try:
            for value in _values(40):
                producer.send(topic, value).get(timeout=30)
                time.sleep(0.05)
        finally:
            producer.close(timeout=10)

    producer_thread = threading.Thread(target=trickle)
    producer_thread.start()
    try:
        drive([loop.step], lambda: len(recorder.items) == 40, 60, "writing the trickle")
    finally:
        producer_thread.join(timeout=60)

    gaps = [
        later - earlier for earlier, later in zip(recorder.written_at, recorder.written_at[1:], strict=False)
    ]
    assert len(recorder.batches) >= 2, "a trickle over seconds is written as it comes, not in one batch"
    assert min(gaps) >= 0.5 - 0.01, f"writes closer than min_write_interval: {gaps}"
    assert recorder.items == _values(40)
