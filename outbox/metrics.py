"""Operator metrics of the outbox, in Prometheus' text format at /metrics.

Gauges (pending, oldest pending age, parked) are read from the outbox table at scrape time, so
they are right whichever process asks, and each costs a bounded number of index reads however
large the backlog: a count reads at most OUTBOX_METRICS_COUNT_LIMIT entries of the (status, id)
index and is exact up to there, above it the optimizer's estimate of the range (index dives, never
below the limit) is reported; the oldest pending event is the first entry of that index (ids grow
with created_at). Counters and the batch duration histogram are written by every relay process into
one Redis hash, because relays run in Celery worker processes that the web process cannot see.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from consumers.metrics import dead_letter_counts
from outbox.models import OutboxEvent, OutboxStatus
from outbox.redis_state import metrics_key, redis_client

logger = logging.getLogger(__name__)

BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COUNTERS = {
    "published": "Events published to Kafka (acknowledged by every in-sync replica).",
    "failures": "Failed publish attempts of single events (each one is retried or parked).",
    "parked": "Events parked as failed after their last attempt.",
}
PARTITION_WAITS = "partition_waits"


def record_batch(
    *,
    published: int,
    seconds: float,
    failed: int = 0,
    parked: int = 0,
    partition_waits: Sequence[tuple[str, int]] = (),
) -> None:
    """Adds one relay batch to the shared counters; never raises (metrics must not stop the relay)."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        key = metrics_key()
        pipe.hincrby(key, "published", published)
        pipe.hincrby(key, "failures", failed)
        pipe.hincrby(key, "parked", parked)
        for topic, partition in partition_waits:
            pipe.hincrby(key, f"{PARTITION_WAITS}:{partition}:{topic}", 1)
        pipe.hincrby(key, "batch_count", 1)
        pipe.hincrbyfloat(key, "batch_sum", seconds)
        for bound in BATCH_SECONDS_BUCKETS:
            if seconds <= bound:
                pipe.hincrby(key, f"batch_le_{bound}", 1)
        pipe.execute()
    except Exception:
        logger.warning("could not record relay metrics in Redis", exc_info=True)


def _shared_counters() -> dict[str, float]:
    try:
        raw = redis_client().hgetall(metrics_key())
    except Exception:
        logger.warning("could not read relay metrics from Redis", exc_info=True)
        return {}
    return {_text(name): float(value) for name, value in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def status_count(status: str) -> int:
    """Rows of one status: exact up to the limit, read from at most that many index entries;
    above it the optimizer's estimate for the range, which costs a few index dives."""
    limit = settings.OUTBOX_METRICS_COUNT_LIMIT
    rows = OutboxEvent.objects.filter(status=status).order_by()
    counted = rows.values("id")[:limit].count()
    if counted < limit:
        return counted
    return max(limit, _estimated_rows(status))


def _estimated_rows(status: str) -> int:
    # A range over the index (not `status = %s` alone) makes the optimizer count the range by
    # dives into the B-tree instead of dividing the table by the statuses' cardinality.
    with connection.cursor() as cursor:
        cursor.execute(
            f"EXPLAIN SELECT id FROM {OutboxEvent._meta.db_table} FORCE INDEX (outbox_status_id)"
            " WHERE status = %s AND id > 0",
            [status],
        )
        columns = [column[0] for column in cursor.description]
        return int(dict(zip(columns, cursor.fetchone(), strict=True))["rows"] or 0)


def oldest_pending_created_at() -> datetime | None:
    """created_at of the pending event with the lowest id. MIN over the (status, id) index is one
    dive into it; `ORDER BY id LIMIT 1` let the optimizer walk the primary key past every
    published row instead."""
    oldest_id = OutboxEvent.objects.filter(status=OutboxStatus.PENDING).aggregate(oldest=Min("id"))["oldest"]
    if oldest_id is None:
        return None
    created_at: datetime | None = (
        OutboxEvent.objects.filter(id=oldest_id).values_list("created_at", flat=True).first()
    )
    return created_at


class OutboxCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "outbox_pending_events",
            "Events waiting to be published (an estimate above OUTBOX_METRICS_COUNT_LIMIT).",
            status_count(OutboxStatus.PENDING),
        )
        oldest = oldest_pending_created_at()
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds", "Age of the oldest event not yet published.", max(0.0, age)
        )
        yield GaugeMetricFamily(
            "outbox_parked_events",
            "Events parked as failed, waiting for a retry from the admin (an estimate above"
            " OUTBOX_METRICS_COUNT_LIMIT).",
            status_count(OutboxStatus.FAILED),
        )

        shared = _shared_counters()
        for name, documentation in COUNTERS.items():
            yield CounterMetricFamily(f"outbox_{name}", documentation, value=shared.get(name, 0.0))
        buckets = [(str(bound), shared.get(f"batch_le_{bound}", 0.0)) for bound in BATCH_SECONDS_BUCKETS]
        buckets.append(("+Inf", shared.get("batch_count", 0.0)))
        yield HistogramMetricFamily(
            "outbox_relay_batch_duration_seconds",
            "Duration of one relay batch: claim, publish and mark.",
            buckets=buckets,
            sum_value=shared.get("batch_sum", 0.0),
        )
        waits = CounterMetricFamily(
            "outbox_partition_waits",
            "Rounds of sends that waited out the delivery timeout on a partition that took no writes;"
            " the relay then sends it nothing but probes until one is acknowledged.",
            labels=["topic", "partition"],
        )
        for name, value in sorted(shared.items()):
            if name.startswith(f"{PARTITION_WAITS}:"):
                _, partition, topic = name.split(":", 2)
                waits.add_metric([topic, partition], value)
        yield waits


class DeadLetterCollector(Collector):
    """Records the consumers dead-lettered, per dead-letter topic and kind of reason."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "consumer_dead_letters",
            "Records set aside in a dead-letter topic, by kind of reason (invalid_event,"
            " unexpected_error, refused_by_target).",
            labels=["topic", "reason"],
        )
        try:
            counts = dead_letter_counts(redis_client())
        except Exception:
            logger.warning("could not read dead-letter counts from Redis", exc_info=True)
            counts = {}
        for (topic, reason), value in sorted(counts.items()):
            family.add_metric([topic, reason], value)
        yield family


def metrics_view(request: HttpRequest) -> HttpResponse:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OutboxCollector())
    registry.register(DeadLetterCollector())
    from analytics.freshness import FreshnessCollector  # the web process has both apps

    registry.register(FreshnessCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
