"""The ClickHouse sink: `orders_analytics` → batches → one synchronous insert → commit offsets.

A retried or redelivered batch is harmless by design: every row carries the order's full state (a
delete row, what the delete needs) and its per-order version, so ReplacingMergeTree keeps one row
per order whatever the number of copies.
Deletes are also recorded in `order_tombstones`, and rows older than an order's delete are dropped
before the insert, so a replay cannot bring a deleted order back after TTL removed it.

TTL removes a delete row at a merge 7 days after deleted_at; older versions of that order go with
it only if they are merged with the delete row. Where that cannot be counted on (a delete row that
arrives already expired, on replay or rebuild; a TTL merge of the delete row's part alone), the
purge deletes every stored version of orders deleted more than 7 days ago."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.exceptions import DatabaseError
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from consumers.kafka_io import DeadLetterQueue, make_consumer, make_producer
from consumers.retry import with_retries
from consumers.runner import BatchingConsumer, Rejection
from consumers.settings import ConsumerSettings
from consumers.views import (
    Delivered,
    RebuildRunning,
    ViewMaintainer,
    id_list,
    needs_build,
    partition_of,
    rebuild,
)
from contract.rows import ORDER_COLUMNS, AnalyticsRow, clickhouse_line, decode_row
from warehouse.client import SYNC_INSERT_SETTINGS, ClickHouseClient, check_identifier, connect

TOMBSTONE_COLUMNS = ("order_id", "deleted_at", "version")
DELETED_ORDER_TTL = timedelta(days=7)  # as in warehouse/schema.sql
PURGE_INTERVAL_SECONDS = 3600.0

log = logging.getLogger(__name__)


def purge_expired_orders(client: ClickHouseClient, database: str, order_ids: Iterable[int] = ()) -> None:
    """Deletes every stored version of orders deleted more than 7 days ago (only `order_ids`, if
    given, which must all be deleted orders). Idempotent; the rows go at the next merge."""
    database = check_identifier(database)
    ids = ",".join(str(int(order_id)) for order_id in sorted(set(order_ids)))
    if ids:
        condition = f"order_id IN ({ids})"
    else:
        days = DELETED_ORDER_TTL.days
        condition = (
            f"order_id IN (SELECT order_id FROM {database}.order_tombstones "
            f"WHERE deleted_at < now64(6) - INTERVAL {days} DAY)"
        )
    client.command(f"DELETE FROM {database}.orders_analytics WHERE {condition}")


# ClickHouse's error codes for data it cannot store, as opposed to "unavailable": CANNOT_PARSE_TEXT,
# CANNOT_PARSE_QUOTED_STRING, CANNOT_PARSE_INPUT_ASSERTION_FAILED, CANNOT_PARSE_DATE,
# CANNOT_PARSE_DATETIME, TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND (e.g. "Decimal value is too big"),
# CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER, INCORRECT_DATA, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE,
# DECIMAL_OVERFLOW. Retrying such an insert fails the same way for ever.
BAD_DATA_CODES = frozenset({6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 321, 407})


def bad_data_reason(exc: BaseException) -> str | None:
    """The reason to dead-letter a row with, when ClickHouse refused it as bad data; None when the
    error means ClickHouse is unavailable (or anything else worth retrying)."""
    if not isinstance(exc, DatabaseError):
        return None
    code = getattr(exc, "code", None)
    if not isinstance(code, int):  # the HTTP client keeps the code in the message only
        found = re.search(r"Code: (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    if code not in BAD_DATA_CODES:
        return None
    message = " ".join(str(exc).split())
    return f"ClickHouse refused the row (code {code}): {message}"[:1000]


class ClickHouseWriter:
    """Writes analytics rows; safe to call again with the same rows after any failure.

    A batch ClickHouse refuses as bad data is split in halves until the rows it refuses are
    isolated: those come back as rejections for the dead-letter topic, and every other row is
    written. Any other error is raised, for the caller to retry."""

    def __init__(
        self, client: ClickHouseClient, database: str, partitions: Callable[[], int] = lambda: 1
    ) -> None:
        self._client = client
        self._database = check_identifier(database)
        self._next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        self._views = ViewMaintainer(client, database)
        # The number of partitions of orders_analytics, for building the view state when the sink
        # finds no epoch of it (a database migrated before the incremental views).
        self._partitions = partitions
        self._checked_state = False

    def write(self, items: Sequence[Delivered | AnalyticsRow]) -> list[Rejection]:
        """Stores the rows in orders_analytics, then applies the ones stored to the views. A row
        without a Kafka position (a direct write) is applied after its partition's progress."""
        if not self._checked_state:
            if needs_build(self._client, self._database):
                partitions = self._partitions()
                log.warning("building the view state from orders_analytics (%d partitions)", partitions)
                try:
                    rebuild(self._client, self._database, partitions)
                except RebuildRunning:
                    log.info("another member builds the view state; waiting for it")
            self._checked_state = True
        stored, rejections = self.store(items)
        self._check_routing(stored)
        self._views.apply(stored)
        return rejections

    def _check_routing(self, items: Sequence[Delivered]) -> None:
        """The views count a customer's distinct days in the partition their rows arrive in, so the
        topic must be routed by customer id, as the transformer does (consumers/views.py). A topic
        filled otherwise (a copy that did not keep partitions) over-counts `unique_customers`:
        said here, found by `manage.py analytics_reconcile`, repaired by a rebuild."""
        positioned = [item for item in items if item.offset is not None and item.row.user_id is not None]
        if not positioned:
            return
        partitions = self._partitions()
        wrong = [i for i in positioned if partition_of(i.row.user_id or 0, partitions) != i.partition]
        if wrong:
            log.warning(
                "%d of %d rows are not in their customer's partition (e.g. order %d in partition %d): "
                "the topic is not routed by customer id, so the views' distinct customers per day "
                "over-count; see README, Incremental views",
                len(wrong), len(positioned), wrong[0].row.order_id, wrong[0].partition,
            )  # fmt: skip

    def store(self, items: Sequence[Delivered | AnalyticsRow]) -> tuple[list[Delivered], list[Rejection]]:
        """The first half of a write: the rows into orders_analytics. Returns the items stored (not
        refused, not older than their order's delete), for the views, and the rejections."""
        delivered = [item if isinstance(item, Delivered) else Delivered(item) for item in items]
        rows = [item.row for item in delivered]
        stored: list[int] = []
        rejections = self._write_isolating(rows, range(len(rows)), stored)
        return [delivered[i] for i in sorted(stored)], rejections

    @property
    def views(self) -> ViewMaintainer:
        return self._views

    def _write_isolating(
        self, rows: Sequence[AnalyticsRow], indexes: range, stored: list[int]
    ) -> list[Rejection]:
        try:
            live = self._write_all([rows[i] for i in indexes])
        except DatabaseError as exc:
            reason = bad_data_reason(exc)
            if reason is None:
                raise
            if len(indexes) == 1:
                return [(indexes[0], reason)]
            middle = len(indexes) // 2
            return self._write_isolating(rows, indexes[:middle], stored) + self._write_isolating(
                rows, indexes[middle:], stored
            )
        stored.extend(indexes[i] for i in live)
        return []

    def _write_all(self, rows: Sequence[AnalyticsRow]) -> list[int]:
        """Writes the rows; returns the positions of those stored (not older than a delete)."""
        deletes = [row for row in rows if row.is_deleted]
        if deletes:
            # Tombstones first: if the order insert below fails, the retry finds them in place.
            self._client.insert(
                f"{self._database}.order_tombstones",
                [[row.order_id, row.deleted_at, row.version] for row in deletes],
                column_names=TOMBSTONE_COLUMNS,
                settings=SYNC_INSERT_SETTINGS,
            )
        tombstone_version = self._tombstone_versions({row.order_id for row in rows})
        # Rows older than the order's delete can only be late or replayed: they must not resurrect it.
        kept = [i for i, row in enumerate(rows) if row.version >= tombstone_version.get(row.order_id, 0)]
        live = [rows[i] for i in kept]
        if live:
            # JSON text, which msgspec writes and ClickHouse parses natively, costs the sink a
            # third of clickhouse-connect's Native encoding, written value by value in Python.
            self._client.raw_insert(
                f"{self._database}.orders_analytics",
                ORDER_COLUMNS,
                b"\n".join(clickhouse_line(row) for row in live),
                settings=SYNC_INSERT_SETTINGS,
                fmt="JSONCompactEachRow",
            )
        expired_before = datetime.now(UTC) - DELETED_ORDER_TTL
        expired = [row.order_id for row in deletes if row.deleted_at and row.deleted_at < expired_before]
        if expired:
            purge_expired_orders(self._client, self._database, expired)
        elif time.monotonic() >= self._next_purge:
            log.info("purging orders deleted more than %s ago", DELETED_ORDER_TTL)
            purge_expired_orders(self._client, self._database)
            self._next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        return kept

    def _tombstone_versions(self, order_ids: set[int]) -> dict[int, int]:
        # A list of ids is one hashed set on the table's key; it costs ClickHouse half what ranges
        # of close ids OR-ed with the rest did (27 against 62 ms for 5,000 orders).
        result = self._client.query(
            f"SELECT order_id, max(version) FROM {self._database}.order_tombstones "
            f"WHERE order_id IN ({id_list(order_ids)}) GROUP BY order_id"
        )
        return {int(order_id): int(version) for order_id, version in result.result_rows}


def decode_analytics_record(record: ConsumerRecord) -> Delivered:
    return Delivered(decode_row(record.value), record.partition, record.offset, record.topic)


def build_sink(
    settings: ConsumerSettings,
    client: ClickHouseClient | None = None,
    stop_event: threading.Event | None = None,
    retry_initial_delay: float = 0.5,
) -> tuple[BatchingConsumer[Delivered], KafkaConsumer, KafkaProducer]:
    stop_event = stop_event or threading.Event()
    producer = make_producer(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="clickhouse-sink")
    consumer = make_consumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        session_timeout_ms=settings.session_timeout_ms,
        group_id=settings.sink_group_id,
        client_id="clickhouse-sink",
    )

    def partitions() -> int:
        found = consumer.partitions_for_topic(settings.analytics_topic)
        if not found:
            raise RuntimeError(f"no partitions known for {settings.analytics_topic} yet")
        return len(found)

    writer = ClickHouseWriter(
        client or connect(settings.clickhouse_url), settings.clickhouse_database, partitions=partitions
    )
    loop = BatchingConsumer(
        consumer=consumer,
        topic=settings.analytics_topic,
        decode=decode_analytics_record,
        write=with_retries(
            writer.write,
            stop_event=stop_event,
            what="inserting into ClickHouse",
            initial_delay=retry_initial_delay,
        ),
        dead_letters=DeadLetterQueue(producer, settings.analytics_dlq_topic, settings.dead_letter_counter()),
        max_batch_size=settings.batch_size,
        max_batch_seconds=settings.batch_seconds,
        min_write_interval=settings.min_write_interval,
        stop_event=stop_event,
        dead_letter_limit=settings.dead_letter_limit(),
    )
    return loop, consumer, producer
