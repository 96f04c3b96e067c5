"""One typed settings object for every consumer role, read from the same environment variables as
backend/settings/base.py, with the same local defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """An environment variable holds a value the consumers cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip() or str(default)
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, "").strip() or default


@dataclass(frozen=True, kw_only=True)
class ConsumerSettings:
    kafka_bootstrap_servers: list[str]
    order_events_topic: str
    analytics_topic: str
    order_events_dlq_topic: str
    analytics_dlq_topic: str
    transformer_group_id: str
    sink_group_id: str
    clickhouse_url: str
    clickhouse_database: str
    # A batch is written when it holds batch_size items or is batch_seconds old, or — once the
    # consumer has read all its partitions hold — at once, but at most once per min_write_interval:
    # large writes under a backlog, low latency and few inserts under a trickle.
    batch_size: int
    batch_seconds: float
    min_write_interval: float = 0.2
    # How long the group waits for a silent (e.g. killed) member before giving its partitions to
    # another: Kafka's default; the broker accepts 6000 to 300000.
    session_timeout_ms: int = 45_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsumerSettings:
        env = os.environ if env is None else env
        var_dir = Path(_str(env, "VAR_DIR", str(REPO_DIR / "var")))
        servers = _str(env, "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094")
        order_events = _str(env, "ORDER_EVENTS_TOPIC", "order.events")
        analytics = _str(env, "ANALYTICS_TOPIC", "orders_analytics")
        return cls(
            kafka_bootstrap_servers=[s.strip() for s in servers.split(",") if s.strip()],
            order_events_topic=order_events,
            analytics_topic=analytics,
            order_events_dlq_topic=_str(env, "ORDER_EVENTS_DLQ_TOPIC", f"{order_events}.dlq"),
            analytics_dlq_topic=_str(env, "ANALYTICS_DLQ_TOPIC", f"{analytics}.dlq"),
            transformer_group_id=_str(env, "TRANSFORMER_GROUP_ID", "analytics-transformer"),
            sink_group_id=_str(env, "SINK_GROUP_ID", "clickhouse-sink"),
            clickhouse_url=_str(env, "CLICKHOUSE_URL", f"chdb://{var_dir / 'chdb'}"),
            clickhouse_database=_str(env, "CLICKHOUSE_DATABASE", "analytics"),
            batch_size=_int(env, "CONSUMER_BATCH_SIZE", 10_000),
            batch_seconds=_float(env, "CONSUMER_BATCH_SECONDS", 1.0),
            min_write_interval=_float(env, "CONSUMER_MIN_WRITE_INTERVAL", 0.2),
            session_timeout_ms=_int(env, "CONSUMER_SESSION_TIMEOUT_MS", 45_000, minimum=6000),
        )
