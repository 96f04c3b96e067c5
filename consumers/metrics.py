"""Dead-letter counters per dead-letter topic and kind of reason, shared through Redis like the
relay's counters (outbox/metrics.py): the consumers run in their own processes, and /metrics is
served by the web process. A counter is best effort and never stops a consumer: with Redis down,
the records are still dead-lettered and only the count is lost; `python -m consumers dlq list`
reads the dead-letter topic itself."""

from __future__ import annotations

import logging
from enum import StrEnum

import redis

log = logging.getLogger(__name__)

# One hash for every consumer: field "<dead-letter topic>|<kind>" → count.
DEAD_LETTER_COUNTS_KEY = "consumers:dead-letters"


class DeadLetterKind(StrEnum):
    """Why a record was set aside, in the few classes a dashboard can count by."""

    # It breaks the contract of docs/events.md.
    INVALID_EVENT = "invalid_event"
    # Decoding it raised something else: a bug of ours on one record.
    UNEXPECTED_ERROR = "unexpected_error"
    # The target (ClickHouse) refused its row as bad data.
    REFUSED_BY_TARGET = "refused_by_target"


class DeadLetterCounter:
    def __init__(self, redis_url: str) -> None:
        # Short timeouts: counting must never hold up a partition.
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)

    def count(self, topic: str, kind: DeadLetterKind) -> None:
        try:
            self._client.hincrby(DEAD_LETTER_COUNTS_KEY, f"{topic}|{kind}", 1)
        except redis.RedisError as exc:
            log.warning("could not count a dead letter in Redis: %s", exc)


def dead_letter_counts(client: redis.Redis) -> dict[tuple[str, str], int]:
    """(dead-letter topic, kind) → records dead-lettered, from the shared hash."""
    counts = {}
    for field, value in client.hgetall(DEAD_LETTER_COUNTS_KEY).items():
        topic, _, kind = _text(field).rpartition("|")
        counts[(topic, kind)] = int(value)
    return counts


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
