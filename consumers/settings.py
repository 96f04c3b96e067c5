"""One typed settings object for every consumer role, read from the same environment variables as
backend/settings/base.py, with the same local defaults (both from the `environment` package)."""

from __future__ import annotations

from dataclasses import dataclass

import environment
from consumers.dead_letters import DeadLetterLimit
from consumers.metrics import DeadLetterCounter
from environment import Env, SettingsError, env_float, env_int, env_str

__all__ = ["ConsumerSettings", "SettingsError"]


def _share(value: float) -> float:
    if value > 1:
        raise SettingsError(f"CONSUMER_DLQ_MAX_SHARE must be a share between 0 and 1, got {value}")
    return value


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
    # Whether the migration makes the sink's tables fsync every insert (README "Durability").
    clickhouse_fsync_after_insert: bool = environment.CLICKHOUSE_FSYNC_AFTER_INSERT
    # A batch is written when it holds batch_size items or is batch_seconds old, or — once the
    # consumer has read all its partitions hold — at once, but at most once per min_write_interval:
    # large writes under a backlog, low latency and few inserts under a trickle.
    batch_size: int
    batch_seconds: float
    min_write_interval: float = 0.2
    # How long the group waits for a silent (e.g. killed) member before giving its partitions to
    # another: Kafka's default; the broker accepts 6000 to 300000.
    session_timeout_ms: int = 45_000
    # The runaway limit on dead letters (consumers/dead_letters.py).
    dlq_max_consecutive: int = 100
    dlq_max_share: float = 0.5
    dlq_window: int = 1000
    # Where the dead-letter counters go (the relay's Redis, consumers/metrics.py).
    metrics_redis_url: str = environment.CELERY_BROKER_URL

    def dead_letter_counter(self) -> DeadLetterCounter:
        return DeadLetterCounter(self.metrics_redis_url)

    def dead_letter_limit(self) -> DeadLetterLimit:
        return DeadLetterLimit(
            max_consecutive=self.dlq_max_consecutive, max_share=self.dlq_max_share, window=self.dlq_window
        )

    @classmethod
    def from_env(cls, env: Env | None = None) -> ConsumerSettings:
        order_events = env_str("ORDER_EVENTS_TOPIC", environment.ORDER_EVENTS_TOPIC, env)
        analytics = env_str("ANALYTICS_TOPIC", environment.ANALYTICS_TOPIC, env)
        dlq = environment.DLQ_SUFFIX
        return cls(
            kafka_bootstrap_servers=environment.kafka_bootstrap_servers(env),
            order_events_topic=order_events,
            analytics_topic=analytics,
            order_events_dlq_topic=env_str("ORDER_EVENTS_DLQ_TOPIC", f"{order_events}{dlq}", env),
            analytics_dlq_topic=env_str("ANALYTICS_DLQ_TOPIC", f"{analytics}{dlq}", env),
            transformer_group_id=env_str("TRANSFORMER_GROUP_ID", "analytics-transformer", env),
            sink_group_id=env_str("SINK_GROUP_ID", "clickhouse-sink", env),
            clickhouse_url=environment.clickhouse_url(env),
            clickhouse_database=env_str("CLICKHOUSE_DATABASE", environment.CLICKHOUSE_DATABASE, env),
            clickhouse_fsync_after_insert=environment.clickhouse_fsync_after_insert(env),
            batch_size=env_int("CONSUMER_BATCH_SIZE", 10_000, env, minimum=1),
            batch_seconds=env_float("CONSUMER_BATCH_SECONDS", 1.0, env, positive=True),
            min_write_interval=env_float("CONSUMER_MIN_WRITE_INTERVAL", 0.2, env, positive=True),
            session_timeout_ms=env_int("CONSUMER_SESSION_TIMEOUT_MS", 45_000, env, minimum=6000),
            dlq_max_consecutive=env_int("CONSUMER_DLQ_MAX_CONSECUTIVE", 100, env, minimum=1),
            dlq_max_share=_share(env_float("CONSUMER_DLQ_MAX_SHARE", 0.5, env, positive=True)),
            dlq_window=env_int("CONSUMER_DLQ_WINDOW", 1000, env, minimum=1),
            metrics_redis_url=env_str(
                "OUTBOX_REDIS_URL", env_str("CELERY_BROKER_URL", environment.CELERY_BROKER_URL, env), env
            ),
        )
