"""Kafka operations for the Makefile's kafka-* targets on the local stack (no Kafka CLI scripts
there: the local cluster runs from Maven jars). Talks to the running cluster with kafka-python's
admin client and prints what Kafka's own tools would.

    python -m scripts.kafka_admin topics [--all]
    python -m scripts.kafka_admin create-topic NAME [--partitions N]
    python -m scripts.kafka_admin describe-topic NAME
    python -m scripts.kafka_admin consumer-groups
    python -m scripts.kafka_admin consumer-lag GROUP
    python -m scripts.kafka_admin cluster-info

KAFKA_BOOTSTRAP_SERVERS chooses the cluster (default: the local 3-node cluster, as in
backend/settings/base.py). Exit status: 0 on success, 1 when Kafka fails or refuses,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import environment
from consumers.kafka_compat import forget_group_coordinator
from consumers.kafka_io import retrying

# The configs worth seeing when describing a topic (the rest are broker defaults).
SHOWN_TOPIC_CONFIGS = ("min.insync.replicas", "cleanup.policy", "retention.ms", "max.message.bytes")


class KafkaAdminError(Exception):
    """An operation the cluster refused or could not answer, in words for the operator."""


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


def partition_lags(
    committed: Mapping[tuple[str, int], int], end: Mapping[tuple[str, int], int]
) -> list[PartitionLag]:
    """Lag per partition of every topic the group committed on; partitions of those topics without
    a commit count from offset 0, the way a new consumer with auto.offset.reset=earliest would."""
    topics = {topic for topic, _ in committed}
    return [
        PartitionLag(topic, partition, committed.get((topic, partition)), end_offset)
        for (topic, partition), end_offset in sorted(end.items())
        if topic in topics
    ]


def format_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def bootstrap_servers(env: Mapping[str, str]) -> list[str]:
    return environment.kafka_bootstrap_servers(env)


def connect(servers: list[str]) -> Any:
    from kafka import KafkaAdminClient

    try:
        return KafkaAdminClient(
            bootstrap_servers=servers,
            client_id="kafka-admin-script",
            request_timeout_ms=15000,
            bootstrap_timeout_ms=15000,
        )
    except Exception as exc:  # kafka-python raises several types for "cannot reach the cluster"
        raise KafkaAdminError(
            f"Kafka is not reachable at {','.join(servers)} ({exc}); "
            "start the local services with `make services-start`"
        ) from exc


# --- operations ---------------------------------------------------------------------------------


def topics(admin: Any, include_internal: bool) -> str:
    names = sorted(admin.list_topics())
    if not include_internal:
        names = [n for n in names if not n.startswith("__")]
    return "\n".join(names) if names else "(no topics)"


def create_topic(admin: Any, name: str, partitions: int) -> str:
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    brokers = len(admin.describe_cluster()["brokers"])
    # RF 3 and min ISR 2 on the 3-node cluster; whatever fits on a smaller one.
    replication = min(3, brokers)
    min_isr = min(2, replication)
    topic = NewTopic(name, partitions, replication, topic_configs={"min.insync.replicas": str(min_isr)})
    try:
        admin.create_topics([topic], timeout_ms=30000)
    except TopicAlreadyExistsError:
        return f"topic {name} already exists (unchanged)\n" + describe_topic(admin, name)
    return (
        f"created topic {name}: {partitions} partitions, replication factor {replication}, "
        f"min.insync.replicas {min_isr}"
    )


def _topic_configs(admin: Any, name: str) -> dict[str, str]:
    from kafka.admin import ConfigResource, ConfigResourceType

    # {resource type: {resource name: {config key: {"value": ..., "config_source": ...}}}}
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all")
    entries = result.get("topic", {}).get(name, {})
    return {key: str(entry["value"]) for key, entry in entries.items()}


def describe_topic(admin: Any, name: str) -> str:
    from kafka.errors import UnknownTopicOrPartitionError

    if name not in admin.list_topics():
        raise KafkaAdminError(f"no topic named {name!r}; `make kafka-topics` lists them")
    try:
        [description] = admin.describe_topics([name])
    except UnknownTopicOrPartitionError as exc:
        raise KafkaAdminError(f"no topic named {name!r}") from exc
    partitions = sorted(description["partitions"], key=lambda p: p["partition_index"])
    replication = len(partitions[0]["replica_nodes"]) if partitions else 0
    lines = [f"Topic: {name}  PartitionCount: {len(partitions)}  ReplicationFactor: {replication}"]
    try:
        configs = _topic_configs(admin, name)
    except Exception as exc:  # configs are a nicety; the partition table is the answer
        configs = {}
        lines.append(f"(configs unavailable: {exc})")
    shown = [f"{key}={configs[key]}" for key in SHOWN_TOPIC_CONFIGS if key in configs]
    if shown:
        lines.append("Configs: " + ", ".join(shown))
    rows = [
        (
            p["partition_index"],
            p["leader_id"],
            ",".join(map(str, p["replica_nodes"])),
            ",".join(map(str, p["isr_nodes"])),
        )
        for p in partitions
    ]
    lines.append(format_table(("PARTITION", "LEADER", "REPLICAS", "ISR"), rows))
    return "\n".join(lines)


def _group_ids(admin: Any) -> list[tuple[str, str]]:
    groups = []
    for group in admin.list_groups():
        if isinstance(group, dict):
            groups.append((group.get("group_id", ""), group.get("group_state", "") or ""))
        else:  # older kafka-python: (group_id, protocol_type)
            groups.append((group[0], ""))
    return sorted(groups)


def consumer_groups(admin: Any) -> str:
    groups = _group_ids(admin)
    if not groups:
        return "(no consumer groups)"
    return format_table(("GROUP", "STATE"), groups)


def consumer_lag(admin: Any, group: str) -> str:
    from kafka.admin import OffsetSpec

    if group not in {g for g, _ in _group_ids(admin)}:
        raise KafkaAdminError(f"no consumer group named {group!r}; `make kafka-consumer-groups` lists them")
    offsets = retrying(
        f"reading the offsets of group {group}",
        lambda: admin.list_group_offsets({group: None}),
        on_retry=lambda _: forget_group_coordinator(admin, group),
    ).get(group, {})
    committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    if not committed:
        return f"consumer group {group} has no committed offsets"
    existing = set(admin.list_topics())
    gone = sorted({topic for topic, _ in committed} - existing)
    committed = {key: offset for key, offset in committed.items() if key[0] in existing}
    note = f"\n(offsets on deleted topics not shown: {', '.join(gone)})" if gone else ""
    if not committed:
        return f"consumer group {group} has committed offsets only on deleted topics{note}"
    topic_names = sorted({topic for topic, _ in committed})
    partitions = []
    for description in admin.describe_topics(topic_names):
        for p in description["partitions"]:
            partitions.append(_topic_partition(description["name"], p["partition_index"]))
    ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
    end = {(tp.topic, tp.partition): value.offset for tp, value in ends.items()}
    lags = partition_lags(committed, end)
    table = format_table(
        ("TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"),
        [(x.topic, x.partition, x.committed, x.end, x.lag) for x in lags],
    )
    return f"GROUP {group}\n{table}\nTOTAL LAG {sum(x.lag for x in lags)}{note}"


def _topic_partition(topic: str, partition: int) -> Any:
    from kafka import TopicPartition

    return TopicPartition(topic, partition)


def cluster_info(admin: Any) -> str:
    cluster = admin.describe_cluster()
    lines = [f"Cluster id: {cluster['cluster_id']}", f"Active controller: {cluster['controller_id']}"]
    brokers = sorted(cluster["brokers"], key=lambda b: b["broker_id"])
    lines.append(
        format_table(
            ("BROKER", "HOST", "PORT", "FENCED"),
            [(b["broker_id"], b["host"], b["port"], b.get("is_fenced", False)) for b in brokers],
        )
    )
    try:
        quorum = admin.describe_metadata_quorum()
        partition = quorum["topics"][0]["partitions"][0]
        voters = [v["replica_id"] for v in partition["current_voters"]]
        lines.append(
            f"KRaft quorum: leader {partition['leader_id']}, epoch {partition['leader_epoch']}, "
            f"high watermark {partition['high_watermark']}, voters {voters}"
        )
    except Exception as exc:  # older brokers have no DescribeQuorum API
        lines.append(f"KRaft quorum: unavailable ({exc})")
    names = admin.list_topics()
    lines.append(f"Topics: {len([n for n in names if not n.startswith('__')])} (plus internal topics)")
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def topic_name(text: str) -> str:
    # Kafka's own rule: 1-249 characters of [a-zA-Z0-9._-], not "." or "..".
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not text or len(text) > 249 or text in {".", ".."} or not set(text) <= allowed:
        raise argparse.ArgumentTypeError(
            f"not a valid topic name: {text!r} (use letters, digits, '.', '_', '-')"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Kafka operations on the running cluster.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("topics", help="list topics")
    listing.add_argument("--all", action="store_true", help="include internal topics")
    create = commands.add_parser("create-topic", help="create a topic (RF 3, min ISR 2 on 3 brokers)")
    create.add_argument("name", type=topic_name)
    create.add_argument("--partitions", type=positive_int, default=3)
    describe = commands.add_parser("describe-topic", help="partitions, leaders, replicas, ISR, configs")
    describe.add_argument("name", type=topic_name)
    commands.add_parser("consumer-groups", help="list consumer groups")
    lag = commands.add_parser("consumer-lag", help="lag per partition of a consumer group")
    lag.add_argument("group")
    commands.add_parser("cluster-info", help="cluster id, controller, brokers, KRaft quorum")
    return parser


def run(args: argparse.Namespace, admin: Any) -> str:
    match args.command:
        case "topics":
            return topics(admin, args.all)
        case "create-topic":
            return create_topic(admin, args.name, args.partitions)
        case "describe-topic":
            return describe_topic(admin, args.name)
        case "consumer-groups":
            return consumer_groups(admin)
        case "consumer-lag":
            return consumer_lag(admin, args.group)
        case "cluster-info":
            return cluster_info(admin)
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        admin = connect(bootstrap_servers(os.environ))
        try:
            print(run(args, admin))
        finally:
            admin.close()
    except KafkaAdminError as exc:
        print(f"kafka_admin: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a broker error: say which operation failed, without a traceback
        print(f"kafka_admin: {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
