"""Which partitions of a topic take writes, as this relay process last found them.

A partition can be unavailable while the rest of its topic works: with too few of its replicas
alive it has fewer in-sync replicas than ``min.insync.replicas`` and refuses acks=all writes, or
it has no leader for a while. Its events are not to blame, so no attempt is charged to them; and
since every send to it waits out the whole delivery timeout (and holds back every other partition
whose records share a produce request with it), the relay stops sending to it: the orders of the
healthy partitions keep their speed.

**A partition comes back on a probe, never on metadata.** When brokers crash, the cluster's
metadata keeps listing the partition's leader and in-sync replicas as healthy until the controller
fences the dead brokers (``broker.session.timeout.ms``, 9 s by default): re-admitting on metadata
sent the next batch straight into another delivery timeout. So a partition that failed is
re-admitted only when a send to it succeeded: after `recheck_seconds`, the relay sends the head
event of one of the partition's waiting orders, that event alone, on a producer of its own
(outbox/producer.py), and does not wait for it. The probe is settled at the relay's next batch:
acknowledged, the event is published and the partition takes sends again; failed, the event is
released uncharged like the other waiting ones and the next probe waits twice as long, up to
`recheck_max_seconds`. Meanwhile the probed event stays leased by this relay, so no other relay
can send that order's later versions before the probe's fate is known; the probe is sent right
after the claim and its producer gives up within the delivery timeout, well inside the lease.

The partition an event goes to is computed here, as Kafka's default partitioner does (murmur2 of
the key over all partitions of the topic), and passed to the producer explicitly; that is how
the relay knows where an event would land before sending it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kafka.partitioner.default import murmur2

logger = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and kafka-python's alike) picks for a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class _Probe:
    """One event sent to an unavailable partition to learn whether it takes writes again."""

    pk: int
    future: Any  # outbox.producer.Delivery
    give_up_at: float  # monotonic; past it a probe still undone counts as failed


@dataclass
class _Outage:
    reason: str
    delay: float  # seconds from one failed probe to the next
    probe_at: float  # monotonic
    probe: _Probe | None = None


@dataclass
class ProbeOutcomes:
    """What the probes settled since the last look: events Kafka acknowledged (to mark published)
    and events whose probe failed (to release uncharged)."""

    acknowledged: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    # A probe that never finished: its producer is to be dropped, so it cannot send it any more.
    stuck: bool = False


class PartitionHealth:
    """The partitions this process found unavailable, and their probes."""

    def __init__(self, *, recheck_seconds: float, recheck_max_seconds: float, probe_timeout: float) -> None:
        self.recheck_seconds = recheck_seconds
        self.recheck_max_seconds = max(recheck_seconds, recheck_max_seconds)
        self.probe_timeout = probe_timeout
        self._down: dict[TopicPartitionKey, _Outage] = {}
        self._lock = threading.Lock()

    def mark_down(self, topic: str, partition: int, reason: str) -> None:
        """A send of the relay's own rounds failed for broker reasons: the partition is out."""
        with self._lock:
            outage = self._down.get((topic, partition))
            if outage is not None:
                outage.reason = reason
                return
            logger.warning(
                "Kafka partition %s-%d is unavailable (%s): its events wait, no attempt is charged to"
                " them, and the other partitions go on",
                topic,
                partition,
                reason,
            )
            self._down[(topic, partition)] = _Outage(
                reason, self.recheck_seconds, time.monotonic() + self.recheck_seconds
            )

    def unavailable(self, topic: str) -> set[int]:
        """The partitions of `topic` not to send to, probed ones included."""
        with self._lock:
            return {partition for (name, partition) in self._down if name == topic}

    def probe_due(self, topic: str, partition: int) -> bool:
        with self._lock:
            outage = self._down.get((topic, partition))
            return outage is not None and outage.probe is None and time.monotonic() >= outage.probe_at

    def probe_sent(self, topic: str, partition: int, pk: int, future: Any) -> None:
        with self._lock:
            outage = self._down[(topic, partition)]
            outage.probe = _Probe(pk, future, time.monotonic() + self.probe_timeout)

    def probe_failed(self, topic: str, partition: int, reason: str) -> None:
        """The partition is still out: the next probe waits twice as long, up to the maximum."""
        with self._lock:
            outage = self._down[(topic, partition)]
            outage.probe = None
            outage.reason = reason
            outage.delay = min(self.recheck_max_seconds, outage.delay * 2)
            outage.probe_at = time.monotonic() + outage.delay
            delay = outage.delay
        logger.info(
            "probe of Kafka partition %s-%d failed (%s); next probe in %.0fs", topic, partition, reason, delay
        )

    def settle(self) -> ProbeOutcomes:
        """Collects the probes that finished: an acknowledged one re-admits its partition."""
        outcomes = ProbeOutcomes()
        with self._lock:
            probing = [(key, outage.probe) for key, outage in self._down.items() if outage.probe is not None]
        now = time.monotonic()
        for (topic, partition), probe in probing:
            if probe.future.is_done and probe.future.succeeded():
                with self._lock:
                    del self._down[(topic, partition)]
                logger.warning(
                    "Kafka partition %s-%d is available again: a probe was acknowledged", topic, partition
                )
                outcomes.acknowledged.append(probe.pk)
            elif probe.future.is_done or now >= probe.give_up_at:
                outcomes.stuck |= not probe.future.is_done
                error = probe.future.exception if probe.future.is_done else TimeoutError("no ack in time")
                self.probe_failed(topic, partition, f"{type(error).__name__}: {error}"[:2000])
                outcomes.failed.append(probe.pk)
        return outcomes
