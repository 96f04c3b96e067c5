"""The freshness watermark's check (writes) and reads, on the Django side: the check needs the
outbox (MySQL), both consumer groups (Kafka) and ClickHouse; the definition is in
consumers/watermark.py and README ("Freshness watermark").

Where the check runs: in a process of its own, `manage.py pipeline_watermark` (the pipeline's
`watermark` role), never in the Celery worker that relays the outbox. It once ran there as a
1-second beat task: during a Kafka outage every check waited out Kafka's timeouts while the relay's
beat ticks, which expire after one interval, expired in the queue behind it, and the relay did not
recover. A process of its own needs no queue, no beat entry and no expiry rule; a slow check can
only delay the next check.

How long a check may take: every wait is bounded — Kafka's bootstrap, requests and retries by the
probe's timeout, the outbox query by the connection's connect, read and write timeouts, the
ClickHouse insert by the client's — and the whole check by PIPELINE_WATERMARK_TIMEOUT from the
outside: it runs on a thread of its own, and the loop waits no longer than that for it. A check
that fails or runs out of time is "unknown": it records nothing, so the watermark stays where the
last complete check put it (never too new), and the dashboards' lag grows, as it should.

The analytics API, /metrics and the dashboards read the result from ClickHouse
(`dashboard_freshness`), one small query each, never Kafka or the outbox."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from queue import SimpleQueue

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analytics.clickhouse import database, rows
from consumers.settings import ConsumerSettings
from consumers.watermark import Check, ConsumerStageProbe, WatermarkUnknown, record_check, table_watermark
from outbox.selectors import outbox_oldest_unpublished_at
from warehouse.client import ClickHouseClient, connect

logger = logging.getLogger(__name__)


def bound_database_waits(seconds: float) -> None:
    """This thread's database connection, when it next connects, waits at most `seconds` to
    connect and for each read and write (mysqlclient's options). The thread's connection gets its
    own copy of the settings: no other connection of the process changes."""
    wrapper = connections[DEFAULT_DB_ALIAS]
    if wrapper.connection is not None:
        return
    whole = max(1, round(seconds))
    options = {**wrapper.settings_dict["OPTIONS"]}
    options.update(connect_timeout=whole, read_timeout=whole, write_timeout=whole)
    wrapper.settings_dict = {**wrapper.settings_dict, "OPTIONS": options}


class WatermarkChecker:
    """Runs checks one at a time on a daemon thread of its own and waits at most `timeout` for
    each. Holds the check's clients (Kafka, ClickHouse, the thread's database connection) from one
    check to the next and drops them after any failure."""

    def __init__(
        self, consumer: ConsumerSettings, clickhouse_url: str, clickhouse_database: str, timeout: float
    ) -> None:
        self._consumer = consumer
        self._clickhouse_url = clickhouse_url
        self._clickhouse_database = clickhouse_database
        self.timeout = timeout
        self._probe: ConsumerStageProbe | None = None
        self._clickhouse: ClickHouseClient | None = None
        self._requests: SimpleQueue[Future[Check] | None] = SimpleQueue()
        self._running: Future[Check] | None = None
        # A daemon: a check stuck in a wait must not hold the process at exit.
        threading.Thread(target=self._serve, name="watermark-check", daemon=True).start()

    @classmethod
    def from_settings(cls) -> WatermarkChecker:
        return cls(
            ConsumerSettings.from_env(),
            settings.CLICKHOUSE_URL,
            settings.CLICKHOUSE_DATABASE,
            settings.PIPELINE_WATERMARK_TIMEOUT,
        )

    def check(self) -> Check:
        """One check, recorded in ClickHouse; WatermarkUnknown when it failed or did not finish
        within the timeout (a check still waiting is not joined by another)."""
        if self._running is not None and not self._running.done():
            raise WatermarkUnknown(f"the previous check is still waiting (more than {self.timeout:g}s)")
        running: Future[Check] = Future()
        self._running = running
        self._requests.put(running)
        try:
            return running.result(timeout=self.timeout)
        except FutureTimeout:
            raise WatermarkUnknown(f"the check did not finish within {self.timeout:g}s") from None

    def close(self) -> None:
        self._requests.put(None)

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            if request.set_running_or_notify_cancel():
                try:
                    request.set_result(self._record())
                except BaseException as exc:
                    request.set_exception(exc)
        self._drop_clients()
        connections.close_all()

    def _record(self) -> Check:
        """On the check's thread. Upstream first: an event that moves on between two reads is
        found by the later one."""
        try:
            close_old_connections()
            bound_database_waits(self.timeout)
            started_at = timezone.now()
            bounds: dict[str, datetime | None] = {"outbox": outbox_oldest_unpublished_at()}
            probe = self._consumer_probe()
            consumer = self._consumer
            bounds["transformer"] = probe.bound(consumer.order_events_topic, consumer.transformer_group_id)
            bounds["sink"] = probe.bound(consumer.analytics_topic, consumer.sink_group_id)
            check = Check(
                checked_at=timezone.now(), watermark=table_watermark(started_at, bounds), bounds=bounds
            )
            record_check(self._clickhouse_client(), self._clickhouse_database, check)
        except Exception as exc:
            self._drop_clients()
            if isinstance(exc, WatermarkUnknown):
                raise
            raise WatermarkUnknown(f"{type(exc).__name__}: {exc}") from exc
        return check

    def _consumer_probe(self) -> ConsumerStageProbe:
        if self._probe is None:
            self._probe = ConsumerStageProbe(self._consumer.kafka_bootstrap_servers, timeout=self.timeout)
        return self._probe

    def _clickhouse_client(self) -> ClickHouseClient:
        if self._clickhouse is None:
            self._clickhouse = connect(self._clickhouse_url, timeout=self.timeout)
        return self._clickhouse

    def _drop_clients(self) -> None:
        if self._probe is not None:
            try:
                self._probe.close()
            except Exception:
                logger.debug("closing the watermark's Kafka clients failed", exc_info=True)
            self._probe = None
        self._clickhouse = None
        # A connection that failed mid-query is unusable: the next check connects again.
        connections[DEFAULT_DB_ALIAS].close_if_unusable_or_obsolete()


def run_checks(checker: WatermarkChecker, interval: float, stop: threading.Event) -> None:
    """A check every `interval` seconds (start to start) until `stop` is set. Logs when the
    watermark becomes unknown and when it is known again, not every second of an outage."""
    known: bool | None = None
    while not stop.is_set():
        started = time.monotonic()
        try:
            check = checker.check()
        except WatermarkUnknown as exc:
            if known is not False:
                logger.warning("freshness watermark unknown, left where it was: %s", exc)
            known = False
        else:
            if known is not True:
                logger.info("freshness watermark known: %s", check.watermark.isoformat())
            known = True
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


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
