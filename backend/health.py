"""Liveness and readiness probes.

/healthz answers as long as the process serves requests. /readyz also checks the dependencies a
request needs: the database (a round trip) and Kafka (cluster metadata from the bootstrap servers).

/readyz is open to anyone who reaches the server, so it must be cheap and say nothing an outsider
should not read: each process keeps one Kafka admin client (built again only after it failed), a
result is reused for READYZ_CACHE_SECONDS so a flood of probes costs one check per interval, and a
failing dependency reads "<name> unavailable" while the error itself goes to the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from kafka import KafkaAdminClient

logger = logging.getLogger(__name__)

Checks = dict[str, dict[str, Any]]


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


class KafkaProbe:
    """One admin client per process for the readiness check, rebuilt when the bootstrap servers
    change or after a check failed (its connections may be the reason)."""

    def __init__(self, timeout_ms: int = 3000) -> None:
        self.timeout_ms = timeout_ms
        self.client: KafkaAdminClient | None = None
        self._servers: tuple[str, ...] = ()

    def _client(self) -> KafkaAdminClient:
        servers = tuple(settings.KAFKA_BOOTSTRAP_SERVERS)
        if self.client is None or servers != self._servers:
            self.close()
            self.client = KafkaAdminClient(
                bootstrap_servers=list(servers),
                client_id="readyz",
                request_timeout_ms=self.timeout_ms,
                bootstrap_timeout_ms=self.timeout_ms,
            )
            self._servers = servers
        return self.client

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                logger.debug("closing the readiness probe's Kafka client failed", exc_info=True)
        self.client = None

    def __call__(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            cluster = self._client().describe_cluster()
        except Exception:
            self.close()
            raise
        brokers = len(cluster.get("brokers", []))
        return {"ok": brokers > 0, "brokers": brokers, "ms": round((time.perf_counter() - started) * 1000, 1)}


class Readiness:
    """The last result, reused while younger than READYZ_CACHE_SECONDS; one check at a time, so
    probes arriving together wait for one check instead of each running their own."""

    def __init__(self, checks: dict[str, Callable[[], dict[str, Any]]]) -> None:
        self.checks = checks
        self._lock = threading.Lock()
        self._result: tuple[bool, Checks] | None = None
        self._key: tuple[str, ...] = ()
        self._checked_at = 0.0

    def __call__(self) -> tuple[bool, Checks]:
        # A result is only reused for the same Kafka servers (tests point the settings elsewhere).
        key = tuple(settings.KAFKA_BOOTSTRAP_SERVERS)
        with self._lock:
            fresh = time.monotonic() - self._checked_at < settings.READYZ_CACHE_SECONDS
            if self._result is None or key != self._key or not fresh:
                self._result = self._check_all()
                self._key = key
                self._checked_at = time.monotonic()
            return self._result

    def _check_all(self) -> tuple[bool, Checks]:
        results: Checks = {}
        for name, check in self.checks.items():
            try:
                results[name] = check()
            except Exception:  # a probe reports every failure instead of raising
                logger.warning("readiness check %s failed", name, exc_info=True)
                results[name] = {"ok": False, "error": f"{name} unavailable"}
        return all(c["ok"] for c in results.values()), results


kafka_probe = KafkaProbe()
readiness = Readiness({"database": check_database, "kafka": kafka_probe})
