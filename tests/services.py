"""Checks that the real services tests need are up, with a message that names the service and
how to start it. A missing service fails the test run: it is never skipped."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings

START_HINT = "start the local services with `make services-start` (scripts/services.sh start)"


def _tcp_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_mariadb() -> None:
    db = settings.DATABASES["default"]
    host, port = str(db["HOST"]), int(db["PORT"])
    if not _tcp_reachable(host, port):
        pytest.fail(f"MariaDB is not reachable at {host}:{port}; {START_HINT}", pytrace=False)


def require_redis() -> None:
    parsed = urlparse(settings.CELERY_BROKER_URL)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if not _tcp_reachable(host, port):
        pytest.fail(f"Redis is not reachable at {host}:{port}; {START_HINT}", pytrace=False)


def require_kafka() -> int:
    """Returns the number of brokers in the cluster."""
    from kafka import KafkaAdminClient

    servers = settings.KAFKA_BOOTSTRAP_SERVERS
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=servers, request_timeout_ms=5000, bootstrap_timeout_ms=10000
        )
        try:
            brokers = len(admin.describe_cluster()["brokers"])
        finally:
            admin.close()
    except Exception as exc:
        pytest.fail(f"Kafka is not reachable at {','.join(servers)} ({exc}); {START_HINT}", pytrace=False)
    return brokers
