"""Which partitions of a topic take writes, as this relay process last found them.

A partition can be unavailable while the rest of its topic works: with two of its three replicas
down it has fewer in-sync replicas than ``min.insync.replicas`` and refuses acks=all writes with
NotEnoughReplicas, or it has no leader for a while. Its events are not to blame, so no attempt is
charged to them; and since every send to it waits out the whole delivery timeout, the relay stops
sending to it until the cluster's metadata says it is back: the orders of the healthy partitions
keep their speed.

The partition an event goes to is computed here, as Kafka's default partitioner does (murmur2 of
the key over all partitions of the topic), and passed to the producer explicitly; that is how
the relay knows where an event would land before sending it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.partitioner.default import murmur2

logger = logging.getLogger(__name__)


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and kafka-python's alike) picks for a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionHealth:
    """The partitions this process found unavailable, and when to ask the cluster about them again.

    Nothing is asked while every partition works. A partition marked down is checked against the
    topic's metadata (a leader, and at least ``min.insync.replicas`` replicas in sync) at most once
    per `recheck_seconds`; a send that fails again marks it down again."""

    def __init__(self, *, recheck_seconds: float) -> None:
        self.recheck_seconds = recheck_seconds
        self._down: dict[tuple[str, int], str] = {}
        self._recheck_at = 0.0
        self._min_isr: dict[str, int] = {}
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()

    def mark_down(self, topic: str, partition: int, reason: str) -> None:
        with self._lock:
            if (topic, partition) not in self._down:
                logger.warning(
                    "Kafka partition %s-%d is unavailable (%s): its events wait, no attempt is charged to"
                    " them, and the other partitions go on",
                    topic,
                    partition,
                    reason,
                )
            self._down[(topic, partition)] = reason
            self._recheck_at = time.monotonic() + self.recheck_seconds

    def unavailable(self, topic: str, *, bootstrap_servers: list[str]) -> set[int]:
        """The partitions of `topic` not to send to now. Asks the cluster once the recheck is due."""
        with self._lock:
            down = {partition for (name, partition) in self._down if name == topic}
            if not down or time.monotonic() < self._recheck_at:
                return down
            self._recheck_at = time.monotonic() + self.recheck_seconds
        back = self._available_again(topic, down, bootstrap_servers)
        with self._lock:
            for partition in back:
                if self._down.pop((topic, partition), None) is not None:
                    logger.warning("Kafka partition %s-%d is available again", topic, partition)
            return {partition for (name, partition) in self._down if name == topic}

    def _available_again(self, topic: str, down: set[int], bootstrap_servers: list[str]) -> set[int]:
        try:
            admin = self._admin_client(bootstrap_servers)
            min_isr = self._topic_min_isr(admin, topic)
            (description,) = admin.describe_topics([topic])
        except Exception as exc:  # the cluster cannot say: keep waiting, ask again later
            logger.info("could not check Kafka partitions of %s: %s", topic, exc)
            self._close_admin()
            return set()
        return {
            state["partition_index"]
            for state in description["partitions"]
            if state["partition_index"] in down and _takes_writes(state, min_isr)
        }

    def _admin_client(self, bootstrap_servers: list[str]) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=bootstrap_servers, client_id="outbox-relay-health", request_timeout_ms=5000
            )
        return self._admin

    def _topic_min_isr(self, admin: KafkaAdminClient, topic: str) -> int:
        if topic not in self._min_isr:
            configs = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
            )
            entry = configs["topic"][topic].get("min.insync.replicas", {"value": "1"})
            self._min_isr[topic] = int(entry["value"])
        return self._min_isr[topic]

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:  # a broken client is dropped either way
                logger.debug("closing the Kafka admin client failed", exc_info=True)


def _takes_writes(state: dict[str, Any], min_isr: int) -> bool:
    return bool(state["error_code"] == 0 and state["leader_id"] >= 0 and len(state["isr_nodes"]) >= min_isr)
