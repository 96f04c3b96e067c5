"""The freshness watermark: the latest commit time T such that every order change committed up to
T is reflected in what dashboards read (README, "Freshness watermark").

It is computed from what the pipeline itself knows, stage by stage, each stage giving a bound: no
change committed before the bound still waits in that stage.

- outbox: the occurred_at of the oldest event not published yet (pending or parked);
- transformer and sink: for each partition of their topic where the group's committed offset is
  behind the end, the commit time of the first record not yet applied (see `commit_time`);
- a stage where nothing waits gives no bound.

The table watermark of one check is the least bound, or — when nothing waits anywhere — the time
the check started, which is honest: everything committed before it was visible to the check and
has gone through. Stages are read upstream first (outbox, then the transformer's group, then the
sink's), so an event moving on between two reads is found by the later one and never missed.

The dashboards' views are kept by the sink in the write that stores the rows in the table, so they
hold what the table holds and their watermark is that of the latest check: the
`dashboard_freshness` view of warehouse/schema.sql reads it; this module only writes checks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.consumer.fetcher import ConsumerRecord

from consumers.kafka_compat import forget_group_coordinator
from consumers.kafka_io import retrying
from warehouse.client import SYNC_INSERT_SETTINGS, ClickHouseClient, check_identifier

log = logging.getLogger(__name__)

# The header the transformer copies the event's occurred_at into (orders_analytics records).
OCCURRED_AT_HEADER = "occurred_at"
WATERMARK_COLUMNS = ("checked_at", "watermark", "outbox_bound", "transformer_bound", "sink_bound")
# How long a probe waits for any one answer from Kafka (a request, the bootstrap, the retries of a
# retriable error, the first unapplied record of its lagging partitions): an outage must make a
# check report "unknown" within seconds, not after Kafka's own 30 s defaults.
DEFAULT_TIMEOUT_SECONDS = 3.0


class WatermarkUnknown(Exception):
    """A check could not tell a stage's bound (e.g. a lagging partition's record did not arrive):
    nothing is recorded, so the watermark stays where the last complete check put it."""


class _CommitTimes(msgspec.Struct):
    # order.events carries the envelope's occurred_at; an orders_analytics record written before
    # the transformer added its header has only the order's created_at, which is never later.
    occurred_at: datetime | None = None
    created_at: datetime | None = None


_commit_times = msgspec.json.Decoder(_CommitTimes)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def commit_time(record: ConsumerRecord) -> datetime:
    """When the change a record carries was committed, or a moment no later than that."""
    for name, value in record.headers or []:
        if name == OCCURRED_AT_HEADER and value:
            return _utc(datetime.fromisoformat(bytes(value).decode()))
    try:
        times = _commit_times.decode(record.value or b"{}")
    except (msgspec.DecodeError, msgspec.ValidationError):
        times = _CommitTimes()
    moment = times.occurred_at or times.created_at
    if moment is not None:
        return _utc(moment)
    # Poison the consumer dead-letters: its Kafka timestamp is when it was produced, after the commit.
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


@dataclass(frozen=True)
class Check:
    checked_at: datetime  # when the check finished reading: the views compare it with their refresh
    watermark: datetime
    bounds: Mapping[str, datetime | None]  # per stage; None when nothing waits there


def table_watermark(started_at: datetime, bounds: Mapping[str, datetime | None]) -> datetime:
    waiting = [bound for bound in bounds.values() if bound is not None]
    return min(waiting) if waiting else started_at


class ConsumerStageProbe:
    """Reads a consumer group's progress on its topic and the first record it has not applied on
    each partition it lags on. Holds its Kafka clients: one probe serves many checks."""

    def __init__(
        self,
        bootstrap_servers: list[str],
        client_id: str = "pipeline-watermark",
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._timeout = timeout
        timeout_ms = max(1000, int(timeout * 1000))
        self._admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
        try:
            # No group: it only reads single records at the offsets the groups committed.
            self._reader = KafkaConsumer(
                bootstrap_servers=bootstrap_servers,
                client_id=client_id,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                max_partition_fetch_bytes=256 * 1024,
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
            )
        except Exception:
            self._admin.close()
            raise
        self._partitions: dict[str, list[TopicPartition]] = {}

    def close(self) -> None:
        self._reader.close()
        self._admin.close()

    def bound(self, topic: str, group: str) -> datetime | None:
        """The commit time of the oldest change `group` has not applied from `topic`; None when
        it has applied everything the topic held."""
        next_unapplied = self.lagging_offsets(topic, group)
        if not next_unapplied:
            return None
        return min(commit_time(record) for record in self.first_records(next_unapplied))

    def lagging_offsets(self, topic: str, group: str) -> dict[TopicPartition, int]:
        partitions = self._topic_partitions(topic)
        ends = self._offsets(partitions, OffsetSpec.LATEST)
        committed_raw = retrying(
            f"reading the offsets group {group} committed",
            lambda: self._admin.list_group_offsets({group: None}),
            timeout=self._timeout,
            on_retry=lambda _: forget_group_coordinator(self._admin, group),
        ).get(group, {})
        committed = {tp: meta.offset for tp, meta in committed_raw.items() if meta.offset >= 0}
        # A partition the group never committed on is read from its beginning (auto_offset_reset).
        starts = {tp: committed[tp] for tp in partitions if tp in committed}
        never = [tp for tp in partitions if tp not in committed and ends[tp] > 0]
        starts.update(self._offsets(never, OffsetSpec.EARLIEST) if never else {})
        return {tp: start for tp, start in starts.items() if start < ends[tp]}

    def first_records(self, offsets: Mapping[TopicPartition, int]) -> list[ConsumerRecord]:
        self._reader.assign(list(offsets))
        for tp, offset in offsets.items():
            self._reader.seek(tp, offset)
        found: dict[TopicPartition, ConsumerRecord] = {}
        deadline = time.monotonic() + self._timeout
        while len(found) < len(offsets):
            if time.monotonic() > deadline:
                missing = sorted(
                    f"{tp.topic}[{tp.partition}]@{offsets[tp]}" for tp in offsets if tp not in found
                )
                raise WatermarkUnknown(f"no record arrived from {', '.join(missing)}")
            polled = self._reader.poll(timeout_ms=200, max_records=len(offsets) * 50)
            for tp, records in polled.items():
                if tp not in found and records:
                    # A compacted topic may have dropped the record at the offset: the next one counts.
                    found[tp] = records[0]
                    self._reader.pause(tp)
        self._reader.resume(*offsets)
        return list(found.values())

    def _topic_partitions(self, topic: str) -> list[TopicPartition]:
        if topic not in self._partitions:
            described = retrying(
                f"describing topic {topic}",
                lambda: self._admin.describe_topics([topic]),
                timeout=self._timeout,
            )
            self._partitions[topic] = [
                TopicPartition(topic, p["partition_index"]) for d in described for p in d["partitions"]
            ]
            if not self._partitions[topic]:
                del self._partitions[topic]
                raise WatermarkUnknown(f"topic {topic} does not exist")
        return self._partitions[topic]

    def _offsets(self, partitions: Sequence[TopicPartition], spec: Any) -> dict[TopicPartition, int]:
        listed = retrying(
            "reading partition offsets",
            lambda: self._admin.list_partition_offsets(
                {tp: spec for tp in partitions}, timeout_ms=int(self._timeout * 1000)
            ),
            timeout=self._timeout,
        )
        return {tp: value.offset for tp, value in listed.items()}


def record_check(client: ClickHouseClient, database: str, check: Check) -> None:
    """One row of `pipeline_watermark`, written synchronously: the views' freshness reads it."""
    bounds = check.bounds
    client.insert(
        f"{check_identifier(database)}.pipeline_watermark",
        [
            [
                check.checked_at,
                check.watermark,
                bounds.get("outbox"),
                bounds.get("transformer"),
                bounds.get("sink"),
            ]
        ],
        column_names=WATERMARK_COLUMNS,
        settings=SYNC_INSERT_SETTINGS,
    )
