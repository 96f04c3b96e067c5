"""The outbox relay: claim pending events, publish them to Kafka, mark what Kafka acknowledged.

One batch is three steps, and the broker I/O never runs inside a database transaction:

1. **Claim** (one short transaction). Pending rows that are due are selected in id order with
   ``FOR UPDATE SKIP LOCKED``, so concurrent relays never claim the same row. Per aggregate only
   a contiguous run of versions starting at the aggregate's lowest unpublished version is kept;
   an aggregate whose head event is parked, backing off, leased by another relay or locked by a
   concurrent claim is skipped entirely. The kept rows get a lease (``locked_by``/``locked_until``)
   and the transaction commits.
2. **Publish**. Runs are sent in rounds: round k sends the k-th event of every run, then waits for
   every acknowledgement. An event is only sent once the previous version of its aggregate was
   acknowledged, so a failed send can never be overtaken by a later version of the same order,
   whatever the client does with its retries.
3. **Mark**. Acknowledged rows become published in one UPDATE. A failed row gets an attempt, its
   error and an exponential backoff, or is parked as failed after the last attempt; the rest of
   its run is released untouched. Rows of a relay that dies before this step keep their lease
   until it runs out and are then claimed and published again: duplicates are possible, loss and
   reordering are not.

A send that fails for broker reasons (a timeout, NotEnoughReplicas, no leader) is not the event's
fault: no attempt is charged. When nothing of a batch got through, Kafka is away and the batch is
released. When only some partitions fail, those partitions are out (outbox/partitions.py): their
runs wait, uncharged, and the relay stops sending to them, so the other partitions keep their
speed. A partition is taken back only once a probe, one of its events sent alone on a producer of
its own, was acknowledged; the probes are settled at the start of the next batch.

Why it is safe with several relays: version v+1 of an aggregate is only claimable once every
earlier version is published, and "published" is only written after Kafka acknowledged it. No
"last published id" high-water mark is used: auto-increment ids become visible out of commit order.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from outbox import metrics
from outbox.envelope import EnvelopeSource, kafka_record_of
from outbox.models import FIRST_VERSION, OutboxEvent, OutboxStatus
from outbox.partitions import PartitionHealth, partition_for_key
from outbox.producer import PROBE, producer_discard, producer_get

logger = logging.getLogger(__name__)

AggregateKey = tuple[str, str]


E = TypeVar("E", bound=EnvelopeSource)

# Exit status of a relay process stopped by the OUTBOX_FAULT_EXIT_AFTER_PRODUCE fault hook.
FAULT_EXIT_STATUS = 70


@dataclass
class BatchResult:
    claimed: int = 0
    published: int = 0
    failed: int = 0
    parked: int = 0
    # Kafka could not be reached at all: nothing was counted against the events.
    outage: bool = False
    # Partitions found unavailable by a round that waited out the delivery timeout on them.
    partition_waits: list[int] = field(default_factory=list)


@dataclass
class RunResult:
    batches: int = 0
    published: int = 0
    failed: int = 0
    parked: int = 0
    outage: bool = False
    seconds: float = 0.0


@dataclass
class _Publication:
    published: list[int] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    # Claimed rows that were never sent: the rest of a failed run, or everything after an outage.
    unsent: list[int] = field(default_factory=list)
    # Rows bound for a partition that is unavailable: they wait until it is back, uncharged.
    deferred: list[int] = field(default_factory=list)
    # Rows sent as probes of an unavailable partition: still leased, settled by a later batch.
    probing: list[int] = field(default_factory=list)
    # Partitions found out by a round of this publication that waited on them.
    partition_waits: list[int] = field(default_factory=list)
    outage: bool = False


def relay_identity() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


# --- claim --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    """What the relay needs of an outbox row: the envelope's fields and the payload as the JSON
    text it is stored as (it only passes through, so it is never parsed)."""

    pk: int
    event_id: str  # the UUID's canonical text, as stored and as it goes on Kafka
    event_type: str
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    occurred_at: datetime
    schema_version: int
    payload_json: str | bytes


_TABLE = OutboxEvent._meta.db_table
_CLAIM_INDEX = "outbox_status_id"

# The relay's hottest query, written out to name its index: ordered by id with a LIMIT, MariaDB's
# optimizer preferred walking the primary key from the table's first row and filtering, so every
# claim read all the published rows before the pending ones (581,000 rows read for 1,000 claimed,
# 300 ms; a backlog drain got slower the further it went). The (status, id) index gives the pending
# rows in id order at once. An earlier version that cannot go out now (parked, backing off, leased)
# blocks its whole aggregate; filtering those tails here keeps one stuck order from filling every
# batch. The event id and payload come as the text they are stored as (the payload only passes
# through), and rows as plain tuples: a batch is thousands of rows.
_CLAIM_SQL = f"""
SELECT o.id, o.event_id, o.event_type, o.aggregate_type, o.aggregate_id, o.aggregate_version,
       o.occurred_at, o.schema_version, o.payload
FROM {_TABLE} o FORCE INDEX ({_CLAIM_INDEX})
WHERE o.status = %(pending)s
  AND (o.locked_until IS NULL OR o.locked_until <= %(now)s)
  AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= %(now)s)
  AND NOT EXISTS (
    SELECT 1 FROM {_TABLE} e
    WHERE e.aggregate_type = o.aggregate_type AND e.aggregate_id = o.aggregate_id
      AND e.aggregate_version < o.aggregate_version
      AND (e.status = %(failed)s
           OR e.status = %(pending)s AND (e.next_attempt_at > %(now)s OR e.locked_until > %(now)s))
  )
ORDER BY o.id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""


def _due_candidates(*, now: datetime, limit: int) -> list[ClaimedEvent]:
    """The pending rows due now, in id order, locked for this claim (inside its transaction)."""
    params = {
        "pending": OutboxStatus.PENDING.value,
        "failed": OutboxStatus.FAILED.value,
        "now": connection.ops.adapt_datetimefield_value(now),
        "limit": limit,
    }
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        rows = cursor.fetchall()
    # Stored in UTC without a zone (USE_TZ): made aware as the ORM would.
    return [ClaimedEvent(pk, e, t, at, ai, av, occurred.replace(tzinfo=UTC), sv, p)
            for pk, e, t, at, ai, av, occurred, sv, p in rows]  # fmt: skip


def _unpublished_heads(keys: Iterable[AggregateKey]) -> dict[AggregateKey, int]:
    """The lowest version not yet published of each aggregate, leased or locked ones included."""
    ids_by_type: dict[str, set[str]] = defaultdict(set)
    for aggregate_type, aggregate_id in keys:
        ids_by_type[aggregate_type].add(aggregate_id)
    heads: dict[AggregateKey, int] = {}
    for aggregate_type, aggregate_ids in ids_by_type.items():
        rows = (
            OutboxEvent.objects.filter(
                aggregate_type=aggregate_type,
                aggregate_id__in=aggregate_ids,
                status__in=[OutboxStatus.PENDING, OutboxStatus.FAILED],
            )
            .values("aggregate_id")
            .annotate(head=Min("aggregate_version"))
        )
        for row in rows:
            heads[(aggregate_type, row["aggregate_id"])] = row["head"]
    return heads


def _heads_of(candidates: Sequence[ClaimedEvent]) -> dict[AggregateKey, int]:
    """The head of each candidate's aggregate. Versions start at FIRST_VERSION, so an aggregate
    with that version among the candidates (locked by this claim) has it as its head; only the
    others need a look at the table. In a backlog of new orders that is none of them."""
    lowest: dict[AggregateKey, int] = {}
    for event in candidates:
        key = (event.aggregate_type, event.aggregate_id)
        lowest[key] = min(event.aggregate_version, lowest.get(key, event.aggregate_version))
    heads = {key: version for key, version in lowest.items() if version == FIRST_VERSION}
    heads.update(_unpublished_heads(lowest.keys() - heads.keys()))
    return heads


def contiguous_runs(candidates: Sequence[E], heads: dict[AggregateKey, int]) -> list[list[E]]:
    """Per aggregate, the candidates that form an unbroken run of versions from the aggregate's
    head. A gap means another relay holds (or is claiming) the missing version: stop there."""
    by_aggregate: dict[AggregateKey, list[E]] = defaultdict(list)
    for event in candidates:
        by_aggregate[(event.aggregate_type, event.aggregate_id)].append(event)
    runs: list[list[E]] = []
    for key, events in by_aggregate.items():
        expected = heads.get(key)
        if expected is None:  # published meanwhile by another relay: nothing left to claim
            continue
        run: list[E] = []
        for event in sorted(events, key=lambda e: e.aggregate_version):
            if event.aggregate_version != expected:
                break
            run.append(event)
            expected += 1
        if run:
            runs.append(run)
    return runs


class StatisticsRefresher:
    """Refreshes the outbox table's statistics after a claim slower than
    OUTBOX_SLOW_CLAIM_SECONDS, at most once per `interval` seconds.

    The optimizer plans the claim's NOT EXISTS per candidate from the table's statistics. Sampled
    while a burst was being written into a young table, they can make it walk every pending row
    of the status index for each candidate instead of the one aggregate's rows by its unique key:
    a claim then takes seconds, growing with the backlog, until InnoDB resamples on its own after
    a tenth of the table has changed. ANALYZE TABLE resamples at once, in milliseconds."""

    def __init__(self, interval: float = 300.0) -> None:
        self.interval = interval
        self._refreshed_at = -float("inf")

    def after_claim(self, seconds: float) -> None:
        now = time.monotonic()
        if seconds < settings.OUTBOX_SLOW_CLAIM_SECONDS or now - self._refreshed_at < self.interval:
            return
        # ANALYZE TABLE commits implicitly on MySQL and MariaDB: never inside a caller's transaction.
        if connection.vendor != "mysql" or connection.in_atomic_block:
            return
        self._refreshed_at = now
        logger.warning(
            "claiming a batch took %.1fs (OUTBOX_SLOW_CLAIM_SECONDS=%s); refreshing the outbox"
            " table's statistics",
            seconds,
            settings.OUTBOX_SLOW_CLAIM_SECONDS,
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE TABLE {connection.ops.quote_name(OutboxEvent._meta.db_table)}")
                cursor.fetchall()
        except DatabaseError as exc:  # the batch is claimed already: publish it regardless
            logger.warning("could not refresh the outbox table's statistics: %s", exc)


# One per process: every relay run of a worker shares the interval.
PROCESS_STATISTICS = StatisticsRefresher()


def claim_batch(
    *, relay_id: str, batch_size: int, statistics: StatisticsRefresher = PROCESS_STATISTICS
) -> list[list[ClaimedEvent]]:
    """Leases a batch and returns it as per-aggregate runs in version order."""
    now = timezone.now()
    started = time.monotonic()
    runs = _claim(now=now, relay_id=relay_id, batch_size=batch_size)
    statistics.after_claim(time.monotonic() - started)
    return runs


def _claim(*, now: datetime, relay_id: str, batch_size: int) -> list[list[ClaimedEvent]]:
    with transaction.atomic():
        candidates = _due_candidates(now=now, limit=batch_size)
        if not candidates:
            return []
        runs = contiguous_runs(candidates, _heads_of(candidates))
        claimed_ids = [event.pk for run in runs for event in run]
        if claimed_ids:
            OutboxEvent.objects.filter(pk__in_ids=claimed_ids).update(
                locked_by=relay_id,
                locked_until=now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS),
            )
    return runs


# --- publish ------------------------------------------------------------------------------------


def _is_transient(exc: BaseException) -> bool:
    """Broker-side trouble (timeouts, unreachable or fenced brokers), not a property of the event."""
    return bool(getattr(exc, "retriable", False)) or isinstance(exc, (TimeoutError, ConnectionError))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


@dataclass
class _Round:
    """One round of sends: the k-th event of every active run, and what came of each."""

    futures: list[tuple[ClaimedEvent, Any]] = field(default_factory=list)
    errors: dict[int, BaseException] = field(default_factory=dict)
    acknowledged: list[int] = field(default_factory=list)
    # A send failed for want of metadata: every further send would block just as long.
    metadata_unavailable: bool = False


@dataclass
class _Target:
    """Where the runs go: the topic, its partition count, and which of its partitions to spare."""

    topic: str
    partitions: int
    health: PartitionHealth
    down: set[int]

    def partition_of(self, event: ClaimedEvent) -> int:
        return partition_for_key(event.aggregate_id.encode(), self.partitions)


def _send_round(producer: Any, active: list[list[ClaimedEvent]], depth: int, target: _Target) -> _Round:
    sent = _Round()
    for run in active:
        event = run[depth]
        try:
            key, value, headers = kafka_record_of(event)
            future = producer.send(
                target.topic, key=key, value=value, headers=headers, partition=target.partition_of(event)
            )
            sent.futures.append((event, future))
        except Exception as exc:  # unserializable payload, oversized record, metadata timeout
            sent.errors[event.pk] = exc
            if _is_transient(exc):
                sent.metadata_unavailable = True
                break
    return sent


def _await_round(producer: Any, sent: _Round) -> None:
    """Waits for every acknowledgement of the round, at most the delivery timeout."""
    try:
        producer.flush(timeout=settings.KAFKA_PRODUCER_DELIVERY_TIMEOUT + 5)
    except Exception as exc:  # futures not done by now count as failed below
        logger.warning("Kafka flush did not finish: %s", _describe(exc))
    for event, future in sent.futures:
        if future.is_done and future.succeeded():
            sent.acknowledged.append(event.pk)
        else:
            sent.errors[event.pk] = future.exception if future.is_done else TimeoutError("no ack in time")


@dataclass
class Lease:
    """This relay's hold on the rows it claimed: until `expires_at` (monotonic), no other relay
    claims them. Measured from before the claim, so it never outlives the lease in the table."""

    relay_id: str
    expires_at: float


def _round_seconds() -> float:
    """The longest a round of sends may take: the flush timeout, and a second for the marking."""
    return settings.KAFKA_PRODUCER_DELIVERY_TIMEOUT + 5 + 1


def _hold_for_round(
    lease: Lease, active: list[list[ClaimedEvent]], depth: int, result: _Publication
) -> list[list[ClaimedEvent]]:
    """The runs this relay may still send a round of. While the lease outlasts the round, all of
    them; otherwise the lease of the rows still to be sent is renewed where this relay still holds
    it, and a run is cut at its first row another relay has taken since (after a lease ran out):
    sending it could put an older version after a newer one the other relay sent."""
    if time.monotonic() + _round_seconds() < lease.expires_at:
        return active
    renewed_at = time.monotonic()
    pending = [event.pk for run in active for event in run[depth:]]
    now = timezone.now()
    with transaction.atomic():
        held_rows = OutboxEvent.objects.filter(
            pk__in=pending, locked_by=lease.relay_id, status=OutboxStatus.PENDING
        )
        held_rows.update(locked_until=now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS))
        held = set(held_rows.values_list("pk", flat=True))
    lease.expires_at = renewed_at + settings.OUTBOX_LEASE_SECONDS
    still_held = []
    for run in active:
        rest = run[depth:]
        kept = next((i for i, event in enumerate(rest) if event.pk not in held), len(rest))
        if kept < len(rest):
            # What is still ours past the cut waits for a later batch, released unsent.
            result.unsent.extend(event.pk for event in rest[kept:] if event.pk in held)
            logger.warning(
                "outbox lease of %s %s lost from version %s on: another relay has it",
                rest[0].aggregate_type,
                rest[0].aggregate_id,
                rest[kept].aggregate_version,
            )
        if kept:
            still_held.append(run[: depth + kept])
    return still_held


_PROCESS_PARTITIONS: PartitionHealth | None = None


def partition_health() -> PartitionHealth:
    """The process's view of unavailable partitions, shared by every relay batch it runs."""
    global _PROCESS_PARTITIONS
    if _PROCESS_PARTITIONS is None:
        _PROCESS_PARTITIONS = PartitionHealth(
            recheck_seconds=settings.OUTBOX_PARTITION_RECHECK_SECONDS,
            recheck_max_seconds=settings.OUTBOX_PARTITION_RECHECK_MAX_SECONDS,
            probe_timeout=_round_seconds(),
        )
    return _PROCESS_PARTITIONS


def publish_runs(runs: list[list[ClaimedEvent]], *, topic: str, lease: Lease) -> _Publication:
    """Publishes the runs round by round: an event goes out only once the previous version of its
    aggregate was acknowledged, and only while this relay's lease on it holds. A failed event
    holds back the rest of its own run only; a run bound for an unavailable partition waits, or
    sends its first event as that partition's probe when one is due."""
    result = _Publication()
    try:
        producer = producer_get()
        partitions = len(producer.partitions_for(topic))
    except Exception as exc:  # no broker answered, or no metadata: an outage, not the events' fault
        logger.warning("Kafka producer unavailable: %s", _describe(exc))
        return _outage(result, runs)
    health = partition_health()
    target = _Target(topic, partitions, health, health.unavailable(topic))

    active = _spare_unavailable(list(runs), 0, target, result)
    depth = 0
    while active:
        active = _hold_for_round(lease, active, depth, result)
        if not active:
            break
        sent = _send_round(producer, active, depth, target)
        _await_round(producer, sent)
        result.published.extend(sent.acknowledged)
        if sent.metadata_unavailable or _nothing_got_through(sent, result):
            return _outage(result, runs)
        found_out = len(result.partition_waits)
        active = _next_active(active, depth, sent.errors, target, result)
        if len(result.partition_waits) > found_out:
            # After records expired that it had sent, an idempotent producer must reset its
            # producer id or epoch before it sends more, which it may ask of the dead broker. A
            # fresh producer is not held up by that.
            producer_discard()
            try:
                producer = producer_get()
            except Exception as exc:
                logger.warning("Kafka producer unavailable: %s", _describe(exc))
                return _outage(result, runs)
        depth += 1
        active = _spare_unavailable(active, depth, target, result)
    return result


def _nothing_got_through(sent: _Round, result: _Publication) -> bool:
    """Kafka is away, and the events are not to blame: nothing of the publication was
    acknowledged, and the round failed only for broker reasons."""
    return bool(sent.errors) and not result.published and all(map(_is_transient, sent.errors.values()))


def _spare_unavailable(
    active: list[list[ClaimedEvent]], depth: int, target: _Target, result: _Publication
) -> list[list[ClaimedEvent]]:
    """The runs whose partition takes writes; the rest of the others is deferred, uncharged. Right
    after the claim, a run of a partition whose probe is due sends its first event as the probe."""
    if not target.down:
        return active
    kept = []
    for run in active:
        partition = target.partition_of(run[depth])
        if partition not in target.down:
            kept.append(run)
        elif depth == 0 and target.health.probe_due(target.topic, partition):
            _probe(run, partition, target, result)
        else:
            result.deferred.extend(event.pk for event in run[depth:])
    return kept


def _probe(run: list[ClaimedEvent], partition: int, target: _Target, result: _Publication) -> None:
    """Sends the run's first event alone to the unavailable partition, on the probe producer, and
    does not wait for it; the rest of the run is deferred."""
    head = run[0]
    try:
        key, value, headers = kafka_record_of(head)
        future = producer_get(PROBE).send(
            target.topic, key=key, value=value, headers=headers, partition=partition
        )
    except Exception as exc:
        if _is_transient(exc):
            target.health.probe_failed(target.topic, partition, _describe(exc))
            result.deferred.extend(event.pk for event in run)
        else:  # the event's own fault (unserializable, oversized): charged like any failed send
            result.failures[head.pk] = _describe(exc)
            result.unsent.extend(event.pk for event in run[1:])
        return
    target.health.probe_sent(target.topic, partition, head.pk, future)
    result.probing.append(head.pk)
    result.deferred.extend(event.pk for event in run[1:])


def _outage(result: _Publication, runs: list[list[ClaimedEvent]]) -> _Publication:
    """Ends the publication as an outage: whatever was not acknowledged is released unsent."""
    result.outage = True
    # A probe in flight keeps its lease until it is settled, whatever becomes of this batch.
    handled = set(result.published) | set(result.probing)
    result.unsent.extend(e.pk for run in runs for e in run if e.pk not in handled)
    result.deferred.clear()
    producer_discard()
    return result


def _next_active(
    active: list[list[ClaimedEvent]],
    depth: int,
    errors: dict[int, BaseException],
    target: _Target,
    result: _Publication,
) -> list[list[ClaimedEvent]]:
    """The runs that go on to the next round. A failed event ends its run: charged an attempt when
    the event is to blame, deferred with the rest of the run when its partition is unavailable."""
    still_active = []
    for run in active:
        event = run[depth]
        error = errors.get(event.pk)
        if error is None:
            if len(run) > depth + 1:
                still_active.append(run)
        elif _is_transient(error):
            partition = target.partition_of(event)
            if partition not in target.down:
                target.health.mark_down(target.topic, partition, _describe(error))
                target.down.add(partition)
                result.partition_waits.append(partition)
            result.deferred.extend(e.pk for e in run[depth:])
        else:
            result.failures[event.pk] = _describe(error)
            result.unsent.extend(e.pk for e in run[depth + 1 :])
    return still_active


# --- mark ---------------------------------------------------------------------------------------


def retry_delay(attempts: int) -> float:
    """Exponential backoff after the given number of failed attempts, capped."""
    base = settings.OUTBOX_RETRY_BASE_SECONDS
    return float(min(settings.OUTBOX_RETRY_MAX_SECONDS, base * (2 ** max(0, attempts - 1))))


def mark_results(publication: _Publication, *, relay_id: str) -> tuple[int, int]:
    """Writes the outcome of a batch; returns (failed, parked)."""
    now = timezone.now()
    parked = 0
    with transaction.atomic():
        if publication.published:
            # Whoever holds the lease now, Kafka has these records: they are published.
            OutboxEvent.objects.filter(pk__in_ids=publication.published, status=OutboxStatus.PENDING).update(
                status=OutboxStatus.PUBLISHED, published_at=now, locked_by="", locked_until=None
            )
        held = OutboxEvent.objects.filter(
            pk__in=list(publication.failures), locked_by=relay_id, status=OutboxStatus.PENDING
        )
        for pk, attempts in held.values_list("pk", "attempts"):
            parked += _charge_attempt(pk, attempts, publication.failures[pk], relay_id=relay_id, now=now)
        if publication.unsent:
            OutboxEvent.objects.filter(pk__in=publication.unsent, locked_by=relay_id).update(
                locked_by="", locked_until=None
            )
        if publication.deferred:
            # Due again when the partition may be probed; the attempts stay as they were.
            OutboxEvent.objects.filter(
                pk__in=publication.deferred, locked_by=relay_id, status=OutboxStatus.PENDING
            ).update(
                locked_by="",
                locked_until=None,
                next_attempt_at=now + timedelta(seconds=settings.OUTBOX_PARTITION_RECHECK_SECONDS),
            )
    return len(publication.failures), parked


def _charge_attempt(pk: int, attempts: int, error: str, *, relay_id: str, now: datetime) -> int:
    """Counts a failed attempt on a row, backing it off or parking it after the last attempt;
    returns 1 if it was parked. Written only if the row is still as this relay left it: leased by
    it, pending and with the attempts just read. Otherwise a concurrent claim won it meanwhile,
    and a plain save would steal that relay's lease, undo its publication or park a delivered row."""
    attempts += 1
    park = attempts >= settings.OUTBOX_MAX_ATTEMPTS
    changed = OutboxEvent.objects.filter(
        pk=pk, locked_by=relay_id, status=OutboxStatus.PENDING, attempts=attempts - 1
    ).update(
        attempts=attempts,
        last_error=error,
        locked_by="",
        locked_until=None,
        status=OutboxStatus.FAILED if park else OutboxStatus.PENDING,
        next_attempt_at=None if park else now + timedelta(seconds=retry_delay(attempts)),
    )
    if changed and park:
        logger.error("outbox event %s parked after %s attempts: %s", pk, attempts, error)
    return int(bool(changed and park))


# --- batches and runs ---------------------------------------------------------------------------


def _settle_probes(*, relay_id: str) -> int:
    """Marks the probes that finished: published when acknowledged, released uncharged when they
    failed. Returns how many were published."""
    outcomes = partition_health().settle()
    if outcomes.stuck:
        producer_discard(PROBE)
    if outcomes.acknowledged or outcomes.failed:
        mark_results(
            _Publication(published=outcomes.acknowledged, deferred=outcomes.failed), relay_id=relay_id
        )
    return len(outcomes.acknowledged)


def relay_batch(*, relay_id: str, batch_size: int, topic: str) -> BatchResult:
    started = time.perf_counter()
    probed = _settle_probes(relay_id=relay_id)
    lease = Lease(relay_id, time.monotonic() + settings.OUTBOX_LEASE_SECONDS)
    runs = claim_batch(relay_id=relay_id, batch_size=batch_size)
    claimed = sum(len(run) for run in runs)
    if not claimed:
        if probed:
            metrics.record_batch(published=probed, seconds=time.perf_counter() - started)
        return BatchResult(published=probed)
    publication = publish_runs(runs, topic=topic, lease=lease)
    if settings.OUTBOX_FAULT_EXIT_AFTER_PRODUCE and publication.published:
        # Test hook: die like a kill -9 between Kafka's ack and the marking transaction.
        logger.error(
            "fault hook: exiting after producing %s events, before marking them", len(publication.published)
        )
        os._exit(FAULT_EXIT_STATUS)
    failed, parked = mark_results(publication, relay_id=relay_id)
    result = BatchResult(
        claimed=claimed,
        published=probed + len(publication.published),
        failed=failed,
        parked=parked,
        outage=publication.outage,
        partition_waits=publication.partition_waits,
    )
    metrics.record_batch(
        published=result.published,
        failed=result.failed,
        parked=result.parked,
        partition_waits=[(topic, partition) for partition in result.partition_waits],
        seconds=time.perf_counter() - started,
    )
    return result


def relay_run(
    *, time_budget: float | None = None, batch_size: int | None = None, topic: str | None = None
) -> RunResult:
    """Drains the outbox batch after batch until nothing is due, Kafka is unreachable, or the
    time budget is spent. A batch that claimed less than a full batch took everything due: the
    run ends there rather than claim once more for nothing. (What commits meanwhile kicked a run
    of its own, or waits for the next beat.)"""
    budget = settings.OUTBOX_RELAY_TIME_BUDGET if time_budget is None else time_budget
    size = batch_size or settings.OUTBOX_RELAY_BATCH_SIZE
    topic = topic or settings.ORDER_EVENTS_TOPIC
    relay_id = relay_identity()
    started = time.monotonic()
    run = RunResult()
    while time.monotonic() - started < budget:
        batch = relay_batch(relay_id=relay_id, batch_size=size, topic=topic)
        if not batch.claimed:
            break
        run.batches += 1
        run.published += batch.published
        run.failed += batch.failed
        run.parked += batch.parked
        if batch.outage:
            run.outage = True
            break
        if batch.claimed < size:
            break
    run.seconds = time.monotonic() - started
    return run
