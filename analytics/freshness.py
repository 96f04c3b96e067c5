"""The freshness watermark's check (writes) and reads, on the Django side: the check needs the
outbox (MySQL), both consumer groups (Kafka) and ClickHouse; the definition is in
consumers/watermark.py and README ("Freshness watermark").

A Celery beat task runs the check every PIPELINE_WATERMARK_INTERVAL seconds; the analytics API,
/metrics and the dashboards read the result from ClickHouse (`dashboard_freshness`), one small
query each, never Kafka or the outbox."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analytics.clickhouse import database, rows
from consumers.settings import ConsumerSettings
from consumers.watermark import Check, ConsumerStageProbe, record_check, table_watermark
from outbox.selectors import outbox_oldest_unpublished_at
from warehouse.client import connect

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_probe: ConsumerStageProbe | None = None


def _consumer_probe(servers: list[str]) -> ConsumerStageProbe:
    global _probe
    if _probe is None:
        _probe = ConsumerStageProbe(servers)
    return _probe


def pipeline_watermark_record() -> Check:
    """One check, written to ClickHouse. Upstream first: an event that moves on between two reads
    is found by the later one. The Kafka clients are kept for the next check, dropped on error."""
    global _probe
    consumer = ConsumerSettings.from_env()
    with _lock:
        started_at = timezone.now()
        try:
            bounds: dict[str, datetime | None] = {"outbox": outbox_oldest_unpublished_at()}
            probe = _consumer_probe(consumer.kafka_bootstrap_servers)
            bounds["transformer"] = probe.bound(consumer.order_events_topic, consumer.transformer_group_id)
            bounds["sink"] = probe.bound(consumer.analytics_topic, consumer.sink_group_id)
        except Exception:
            if _probe is not None:
                _probe.close()
                _probe = None
            raise
        check = Check(checked_at=timezone.now(), watermark=table_watermark(started_at, bounds), bounds=bounds)
    record_check(connect(settings.CLICKHOUSE_URL), settings.CLICKHOUSE_DATABASE, check)
    return check


def dashboard_as_of() -> datetime | None:
    """Every order change committed before this is reflected in the views; None while unknown.
    Read it before the figures it qualifies: a refresh in between then only makes them newer."""
    found = rows(f"SELECT as_of FROM {database()}.dashboard_freshness")
    if not found:
        return None
    moment: datetime = found[0]["as_of"]
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class FreshnessCollector(Collector):
    """/metrics: how many seconds the dashboards' views trail the commits (one small ClickHouse
    query per scrape). No sample while the watermark is unknown or ClickHouse unreachable: a
    missing series is an alert, a made-up number is not."""

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "pipeline_freshness_lag_seconds",
            "Seconds between now and the freshness watermark of the dashboards' views.",
        )
        try:
            as_of = dashboard_as_of()
        except Exception:
            logger.warning("could not read the freshness watermark", exc_info=True)
            as_of = None
        if as_of is not None:
            gauge.add_metric([], max(0.0, (timezone.now() - as_of).total_seconds()))
        yield gauge
