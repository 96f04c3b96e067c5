"""Reading a whole topic back, and what the fault run checks on it: per-order order and
duplicates."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord


def read_topic(bootstrap: list[str], topic: str, timeout: float = 60.0) -> list[ConsumerRecord]:
    """Every record of the topic up to its current end, in (partition, offset) order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            raise ValueError(f"no topic named {topic!r}")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout:.0f}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def event_version(record: ConsumerRecord) -> tuple[str, int]:
    """(event id, version) of an `order.events` record."""
    event = json.loads(record.value)
    return str(event["event_id"]), int(event["aggregate_version"])


def row_version(record: ConsumerRecord) -> tuple[str, int]:
    """(identity, version) of an `orders_analytics` record: an order's row of one version is
    the same row whoever wrote it."""
    version = int(json.loads(record.value)["version"])
    return f"{record.key!r}:{version}", version


@dataclass
class OrderCheck:
    orders: int = 0
    records: int = 0
    duplicates: int = 0
    # A version after a later one (strict) or first seen after a later one, or a last record that
    # is not the latest version (what a compacted topic keeps).
    out_of_order: int = 0
    # The order's current version never reached the topic.
    missing_latest: int = 0


def check_orders(
    records: Iterable[ConsumerRecord],
    versions: dict[str, int],
    identify: Callable[[ConsumerRecord], tuple[str, int]],
    *,
    strict: bool,
) -> OrderCheck:
    """Checks the records of the orders in `versions` (order id → current version); records of
    other keys (poison) are left out. `strict`: even a duplicate may not follow a later version
    (the relay's topic: a relay never sends an older version after a newer one); otherwise only
    first occurrences count, as a consumer that re-reads an uncommitted batch writes it again."""
    seen: set[str] = set()
    sequences: dict[str, list[int]] = {}
    result = OrderCheck()
    for record in records:
        key = record.key.decode() if record.key else ""
        if key not in versions:
            continue
        try:
            identity, version = identify(record)
        except (ValueError, KeyError, TypeError):  # poison on a real order's key
            continue
        result.records += 1
        sequence = sequences.setdefault(key, [])
        duplicate = identity in seen
        seen.add(identity)
        result.duplicates += duplicate
        if sequence and version < max(sequence) and (strict or not duplicate):
            result.out_of_order += 1
        sequence.append(version)
    result.orders = len(sequences)
    for order, current in versions.items():
        sequence = sequences.get(order, [])
        if current not in sequence:
            result.missing_latest += 1
        elif sequence[-1] != max(sequence):
            result.out_of_order += 1
    return result
