"""The pipeline's Kafka topics and their settings, provisioned from code (``manage.py kafka_topics``).

Per-topic settings live in one table, ``TOPIC_CONFIGS``, keyed by the topic's role: change a
topic's semantics there (the consumers own the analytics topic's). Partitions, replication and
min.insync.replicas follow the cluster: replication factor 3 with min ISR 2 on a 3-node cluster,
so losing one broker loses neither data nor availability; 1 and 1 on a one-node dev cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from environment import DLQ_SUFFIX

# How long a superseded row of the analytics topic may wait for compaction: the cleaner otherwise
# leaves a quiet topic's rows (an order's customer email among them) uncompacted for as long as
# too few have piled up, and never touches the segment still being written. As ClickHouse's TTL.
ANALYTICS_MAX_COMPACTION_LAG_MS = 7 * 24 * 3600 * 1000

# role -> extra topic configs. The analytics topic is compacted by order id: it keeps the latest
# row of every order (a deleted order's delete row, which carries no personal data) for good, so
# ClickHouse can be rebuilt from it (README, "Analytics schema": Kafka retention).
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "order_events": {},
    "order_events_dlq": {},
    "analytics": {
        "cleanup.policy": "compact",
        "max.compaction.lag.ms": str(ANALYTICS_MAX_COMPACTION_LAG_MS),
    },
    "analytics_dlq": {},
}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass
class TopicOutcome:
    name: str
    action: str  # "created", "updated", "unchanged"
    details: list[str] = field(default_factory=list)


def topic_specs(*, brokers: int, partitions: int | None = None) -> list[TopicSpec]:
    if brokers < 1:
        raise ValueError("the Kafka cluster reports no brokers")
    count = partitions or settings.KAFKA_TOPIC_PARTITIONS
    if count < 1:
        raise ValueError(f"partitions must be at least 1, got {count}")
    replication = min(3, brokers)
    min_isr = min(2, replication)
    names = {
        "order_events": settings.ORDER_EVENTS_TOPIC,
        "order_events_dlq": settings.ORDER_EVENTS_TOPIC + DLQ_SUFFIX,
        "analytics": settings.ANALYTICS_TOPIC,
        "analytics_dlq": settings.ANALYTICS_TOPIC + DLQ_SUFFIX,
    }
    return [
        TopicSpec(
            name=names[role],
            partitions=count,
            replication_factor=replication,
            configs={"min.insync.replicas": str(min_isr), **extra},
        )
        for role, extra in TOPIC_CONFIGS.items()
    ]


def _current_configs(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    # "all", not the default "modified": a wanted value that equals the broker default counts too.
    described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    return {
        name: {key: entry["value"] for key, entry in configs.items()} for name, configs in described.items()
    }


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}


def topics_ensure(admin: KafkaAdminClient, specs: list[TopicSpec]) -> list[TopicOutcome]:
    """Creates missing topics; on existing ones raises the partition count to the wanted one and
    sets the wanted configs. Idempotent. Never lowers partitions (Kafka cannot) nor deletes data."""
    existing = set(admin.list_topics())
    outcomes: dict[str, TopicOutcome] = {}
    missing = [spec for spec in specs if spec.name not in existing]
    for spec in missing:
        try:
            admin.create_topics(
                [NewTopic(spec.name, spec.partitions, spec.replication_factor, topic_configs=spec.configs)],
                timeout_ms=30_000,
            )
            outcomes[spec.name] = TopicOutcome(spec.name, "created")
        except TopicAlreadyExistsError:  # created concurrently by another provisioner
            existing.add(spec.name)

    present = [spec for spec in specs if spec.name in existing]
    if present:
        counts = _partition_counts(admin, [s.name for s in present])
        current = _current_configs(admin, [s.name for s in present])
        for spec in present:
            outcome = TopicOutcome(spec.name, "unchanged")
            have = counts.get(spec.name, 0)
            if have < spec.partitions:
                admin.create_partitions({spec.name: spec.partitions})
                outcome.details.append(f"partitions {have} -> {spec.partitions}")
            elif have > spec.partitions:
                outcome.details.append(f"has {have} partitions (more than {spec.partitions}; kept)")
            drift = {k: v for k, v in spec.configs.items() if current.get(spec.name, {}).get(k) != v}
            if drift:
                # Incremental on current brokers: only the wanted keys change, the others stay.
                admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=spec.configs)]
                )
                outcome.details.extend(f"{k}={v}" for k, v in drift.items())
            if outcome.details and any(not d.startswith("has ") for d in outcome.details):
                outcome.action = "updated"
            outcomes[spec.name] = outcome
    return [outcomes[spec.name] for spec in specs]


def cluster_brokers(admin: KafkaAdminClient) -> int:
    cluster: dict[str, Any] = admin.describe_cluster()
    return len(cluster["brokers"])
