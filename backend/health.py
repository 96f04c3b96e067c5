"""Liveness and readiness probes.

/healthz answers as long as the process serves requests. /readyz also checks the dependencies a
request needs: the database (a round trip) and Kafka (cluster metadata from the bootstrap servers).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from kafka import KafkaAdminClient


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_kafka(timeout_ms: int = 3000) -> dict[str, Any]:
    started = time.perf_counter()
    admin = KafkaAdminClient(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        client_id="readyz",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    brokers = len(cluster.get("brokers", []))
    return {"ok": brokers > 0, "brokers": brokers, "ms": round((time.perf_counter() - started) * 1000, 1)}


def readiness() -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    for name, check in (("database", check_database), ("kafka", check_kafka)):
        try:
            checks[name] = check()
        except Exception as exc:  # a probe reports every failure instead of raising
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return all(c["ok"] for c in checks.values()), checks
