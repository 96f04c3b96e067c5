"""The relay's small shared state in Redis: the kick debounce key and the relay counters.

Every caller treats Redis as optional: when it is down, writes still commit, beat still relays,
and only the kick and the counters are lost.
"""

from __future__ import annotations

import os

import redis
from django.conf import settings

_client: redis.Redis | None = None
_client_pid: int | None = None


def redis_client() -> redis.Redis:
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        # Short timeouts: a request thread that kicks the relay must never wait on Redis.
        _client = redis.Redis.from_url(
            settings.OUTBOX_REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5
        )
        _client_pid = os.getpid()
    return _client


def redis_client_reset() -> None:
    """Forgets the cached client, so the next call connects to the current OUTBOX_REDIS_URL."""
    global _client, _client_pid
    _client, _client_pid = None, None


def kick_key() -> str:
    # Per queue, so separate deployments (or test runs) on one Redis never debounce each other.
    return f"outbox:relay-kick:{settings.CELERY_TASK_DEFAULT_QUEUE}"


def metrics_key() -> str:
    return f"outbox:relay-metrics:{settings.CELERY_TASK_DEFAULT_QUEUE}"
