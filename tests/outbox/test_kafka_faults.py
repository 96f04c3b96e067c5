"""The relay through Kafka failures, on a private 3-node cluster that the tests break (the shared
cluster is never touched): the whole cluster unreachable for a while, and one broker stopped in
the middle of a run, and one partition without enough in-sync replicas while the others work,
found so by the relay either at once or only after a crash the metadata does not show yet.
Real Celery worker and beat processes relay. And the freshness watermark's check through the same
outage: it says "unknown" and records nothing until the cluster is back."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from analytics.freshness import WatermarkChecker
from consumers.settings import ConsumerSettings
from consumers.watermark import Check, WatermarkUnknown
from outbox.models import OutboxEvent, OutboxStatus
from outbox.partitions import partition_for_key
from tests.outbox.conftest import (
    PrivateKafka,
    Processes,
    duplicates,
    first_occurrence_versions,
    insert_outbox_events,
    metric,
    read_topic,
    scrape_metrics,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _published() -> int:
    return OutboxEvent.objects.filter(status=OutboxStatus.PUBLISHED).count()


def _topic(cluster: PrivateKafka, name: str, assignments: dict[int, list[int]] | None = None) -> str:
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=30000)
    configs = {"min.insync.replicas": "2"}
    if assignments:
        topic = NewTopic(name, replica_assignments=assignments, topic_configs=configs)
    else:
        topic = NewTopic(name, 3, 3, topic_configs=configs)
    try:
        admin.create_topics([topic])
    finally:
        admin.close()
    return name


def _relays(processes: Processes, cluster: PrivateKafka, topic: str, **extra: object) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(cluster.bootstrap),
        "ORDER_EVENTS_TOPIC": topic,
        "OUTBOX_RELAY_INTERVAL": 1,
        "KAFKA_PRODUCER_DELIVERY_TIMEOUT": 6,
        **extra,
    }
    processes.worker("worker", **env)
    processes.beat(**env)


def _assert_complete_and_ordered(cluster: PrivateKafka, topic: str) -> int:
    """Every outbox event is on the topic, each order's versions first seen in version order."""
    expected = {str(e) for e in OutboxEvent.objects.values_list("event_id", flat=True)}
    versions: dict[str, list[int]] = {}
    for order, version in OutboxEvent.objects.order_by("aggregate_version").values_list(
        "aggregate_id", "aggregate_version"
    ):
        versions.setdefault(order, []).append(version)
    records = read_topic(topic, bootstrap=cluster.bootstrap, expected=len(expected), timeout=60)
    assert {r.event["event_id"] for r in records} == expected, "events lost"
    assert first_occurrence_versions(records) == versions
    return duplicates(records)


def test_one_broker_stopped_mid_run_loses_nothing_and_logs_one_warning(
    processes: Processes, private_kafka: PrivateKafka
) -> None:
    topic = _topic(private_kafka, f"order-events-{time.time_ns()}")
    insert_outbox_events(orders=100, versions=10)
    # Small batches keep the relay busy for a while, so the broker goes away in mid-publishing.
    _relays(processes, private_kafka, topic, OUTBOX_RELAY_BATCH_SIZE=5)
    assert wait_until(lambda: _published() > 0, timeout=60), "nothing published before the broker stop"

    try:
        stopping = threading.Thread(target=private_kafka.stop_node, args=(2,))
        stopping.start()
        stopped_at = _published()
        insert_outbox_events(orders=100, versions=10, first_order=101)
        stopping.join(timeout=60)
        host, port = private_kafka.bootstrap[1].split(":")
        with socket.socket() as probe:
            assert probe.connect_ex((host, int(port))) != 0, "broker 2 is still listening"
        # Two replicas of three are in sync: acks=all with min ISR 2 keeps publishing.
        assert wait_until(lambda: _published() == 2000, timeout=90, interval=1), (
            f"{_published()} of 2000 published with one broker down"
        )
        dupes = _assert_complete_and_ordered(private_kafka, topic)
        print(f"broker 2 stopped at {stopped_at} of 1000 published; all 2000 in Kafka, {dupes} duplicates")
        assert stopped_at < 1000, "the broker stop came after the backlog was drained"
        # A condition the relay handles: no ERROR line. The producer's reports of the lost
        # connection, when it makes one (a broker that handed its partitions over before it
        # stopped may go unmentioned), are one warning naming the broker, never its raw lines.
        log = processes.log("worker")
        errors = [line for line in log.splitlines() if "ERROR/" in line]
        assert errors == [], "\n".join(errors[:20])
        assert log.count("Kafka broker 2 unreachable") <= 1
        assert "FAIL [" not in log, "a librdkafka connection line got through unfiltered"
    finally:
        private_kafka.start()  # the next test gets the whole cluster back


def test_kafka_unreachable_marks_nothing_and_the_relay_recovers_by_itself(
    processes: Processes, private_kafka: PrivateKafka
) -> None:
    topic = _topic(private_kafka, f"order-events-{time.time_ns()}")
    insert_outbox_events(orders=10, versions=5)
    # Few attempts: if an outage counted against the events, they would be parked quickly.
    _relays(processes, private_kafka, topic, OUTBOX_MAX_ATTEMPTS=2, OUTBOX_RETRY_BASE_SECONDS=0.5)
    assert wait_until(lambda: _published() == 50, timeout=60)

    private_kafka.stop()
    insert_outbox_events(orders=10, versions=5, first_order=11)
    time.sleep(12)  # several beat ticks against a dead cluster
    assert _published() == 50, "rows were marked published while Kafka was down"
    backlog = OutboxEvent.objects.exclude(status=OutboxStatus.PUBLISHED)
    assert set(backlog.values_list("status", flat=True)) == {OutboxStatus.PENDING}
    assert set(backlog.values_list("attempts", flat=True)) == {0}, "an outage was charged to the events"
    assert "Kafka unreachable" in processes.log("worker")

    private_kafka.start()
    assert wait_until(lambda: _published() == 100, timeout=90, interval=1), (
        f"{_published()} of 100 published after Kafka came back"
    )
    dupes = _assert_complete_and_ordered(private_kafka, topic)
    print(f"Kafka outage: backlog of 50 drained after recovery, {dupes} duplicates")


def _published_of(orders: set[str]) -> int:
    return OutboxEvent.objects.filter(status=OutboxStatus.PUBLISHED, aggregate_id__in=orders).count()


def test_an_unavailable_partition_is_charged_nothing_and_spares_the_others(
    processes: Processes, private_kafka: PrivateKafka
) -> None:
    # Two replicas per partition, min ISR 2: partitions 0 and 1 live on brokers 1 and 2, partition
    # 2 on brokers 3 and 1. With broker 3 stopped, partition 2 keeps one replica in sync and refuses
    # acks=all writes (NotEnoughReplicas); partitions 0 and 1 are untouched.
    topic = _topic(
        private_kafka, f"order-events-{time.time_ns()}", assignments={0: [1, 2], 1: [2, 1], 2: [3, 1]}
    )
    orders = [str(order) for order in range(1, 61)]
    out = {order for order in orders if partition_for_key(order.encode(), 3) == 2}
    healthy = set(orders) - out
    assert out and healthy
    private_kafka.stop_node(3)
    try:
        insert_outbox_events(orders=30, versions=5)
        # Few attempts and a short backoff: were the outage charged to its events, they would be
        # parked within seconds.
        _relays(
            processes, private_kafka, topic,
            OUTBOX_MAX_ATTEMPTS=2, OUTBOX_RETRY_BASE_SECONDS=0.5, OUTBOX_PARTITION_RECHECK_SECONDS=1,
            OUTBOX_PARTITION_RECHECK_MAX_SECONDS=4,
        )  # fmt: skip
        first = healthy & {str(order) for order in range(1, 31)}
        assert wait_until(lambda: _published_of(first) == 5 * len(first), timeout=90, interval=0.5), (
            f"{_published_of(first)} of {5 * len(first)} healthy events published with partition 2 out"
        )
        # Once the relay knows partition 2 is out, later orders of the healthy partitions no longer
        # wait for it (each send to it would wait out the 6 s delivery timeout).
        started = time.monotonic()
        insert_outbox_events(orders=30, versions=5, first_order=31)
        assert wait_until(lambda: _published_of(healthy) == 5 * len(healthy), timeout=60, interval=0.2)
        burst_seconds = time.monotonic() - started
        time.sleep(3)  # a few more beat ticks against the partition that is still out
        waiting = OutboxEvent.objects.filter(aggregate_id__in=out)
        assert set(waiting.values_list("status", flat=True)) == {OutboxStatus.PENDING}
        assert set(waiting.values_list("attempts", flat=True)) == {0}, "the partition's outage was charged"
        assert "Kafka partition" in processes.log("worker")
    finally:
        private_kafka.start()
    assert wait_until(lambda: _published() == 300, timeout=90, interval=1), f"{_published()} of 300 published"
    dupes = _assert_complete_and_ordered(private_kafka, topic)
    print(
        f"partition 2 out: {5 * len(healthy)} healthy events published, the second burst in"
        f" {burst_seconds:.1f}s;"
        f" {5 * len(out)} waited uncharged and went out after recovery, {dupes} duplicates"
    )


def _watermark_checker(cluster: PrivateKafka, database: str) -> WatermarkChecker:
    run = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(cluster.bootstrap),
        "ORDER_EVENTS_TOPIC": _topic(cluster, f"order-events-{run}"),
        "ANALYTICS_TOPIC": _topic(cluster, f"orders-analytics-{run}"),
        "TRANSFORMER_GROUP_ID": f"transformer-{run}",
        "SINK_GROUP_ID": f"sink-{run}",
    }
    return WatermarkChecker(ConsumerSettings.from_env(env), settings.CLICKHOUSE_URL, database, timeout=3.0)


def _recorded(client: Any, database: str) -> list[tuple[Any, ...]]:
    sql = f"SELECT checked_at, watermark FROM {database}.pipeline_watermark ORDER BY checked_at"
    return list(client.query(sql).result_rows)


def test_the_watermark_check_says_unknown_while_kafka_is_unreachable_and_records_nothing(
    private_kafka: PrivateKafka, clickhouse_client: Any, clickhouse_database: str
) -> None:
    from warehouse.schema import migrate

    migrate(clickhouse_client, clickhouse_database)
    oldest_pending = insert_outbox_events(orders=3, versions=1)[0].occurred_at
    checker = _watermark_checker(private_kafka, clickhouse_database)
    checks: list[Check] = []

    def known() -> bool:
        try:
            checks.append(checker.check())
        except WatermarkUnknown:
            return False  # e.g. the first checks of a new cluster, while it places the offsets topic
        return True

    try:
        assert wait_until(known, timeout=60, interval=1), "no check succeeded with the cluster up"
        assert checks[-1].watermark == oldest_pending  # the outbox holds the watermark
        before = _recorded(clickhouse_client, clickhouse_database)

        private_kafka.stop()
        try:
            reasons: list[str] = []
            for _ in range(3):  # the first after the outage, and checks that follow it
                started = time.monotonic()
                with pytest.raises(WatermarkUnknown) as unknown:
                    checker.check()
                reasons.append(f"{time.monotonic() - started:.1f}s: {unknown.value}")
                print(f"watermark check with Kafka down: unknown after {reasons[-1]}")
            during = _recorded(clickhouse_client, clickhouse_database)
            assert during == before, "a check recorded a watermark without Kafka"
        finally:
            private_kafka.start()

        assert wait_until(known, timeout=90, interval=1), "no check succeeded after Kafka came back"
        assert checks[-1].watermark == oldest_pending
        assert len(_recorded(clickhouse_client, clickhouse_database)) > len(before)
    finally:
        checker.close()


def _partition_waits(processes: Processes, topic: str, partition: int) -> float:
    """How many rounds of the relay processes waited out the delivery timeout on the partition."""
    with override_settings(CELERY_TASK_DEFAULT_QUEUE=processes.base_env["CELERY_TASK_DEFAULT_QUEUE"]):
        text = scrape_metrics()
    return metric(text, f'outbox_partition_waits_total{{partition="{partition}",topic="{topic}"}}')


def test_a_crashed_replica_is_not_taken_back_on_the_metadata_that_still_lists_it(
    processes: Processes, private_kafka: PrivateKafka
) -> None:
    # Partition 2 lives on brokers 1 and 3, led by 1; partitions 0 and 1 on brokers 1 and 2. A
    # crashed broker 3 (no controlled shutdown) leaves the metadata listing partition 2 with its
    # leader and both replicas in sync until the controller fences broker 3, seconds later, while
    # the partition already refuses acks=all writes. A relay that took the partition back on that
    # metadata sent the next batch into the delivery timeout again, holding back every healthy
    # order of the batch once more. Finding the partition out costs one wait, which partition 0
    # may share (its records go to broker 1 in the same requests); partition 1 must never wait.
    topic = _topic(
        private_kafka, f"order-events-{time.time_ns()}", assignments={0: [1, 2], 1: [2, 1], 2: [1, 3]}
    )
    out = {str(order) for order in range(31, 61) if partition_for_key(str(order).encode(), 3) == 2}
    healthy = {str(order) for order in range(31, 61)} - out
    assert out and healthy
    _relays(
        processes, private_kafka, topic,
        KAFKA_PRODUCER_DELIVERY_TIMEOUT=4, OUTBOX_PARTITION_RECHECK_SECONDS=1,
        OUTBOX_PARTITION_RECHECK_MAX_SECONDS=4,
    )  # fmt: skip
    insert_outbox_events(orders=30, versions=1)
    assert wait_until(lambda: _published() == 30, timeout=60), "the relay did not start publishing"
    try:
        private_kafka.kill_node(3)
        insert_outbox_events(orders=30, versions=5, first_order=31)
        assert private_kafka.in_sync_replicas(topic, 2) == [1, 3], "broker 3 was fenced before the writes"
        assert wait_until(lambda: _published_of(healthy) == 5 * len(healthy), timeout=60, interval=0.2)

        # The window closes when the controller fences broker 3: from then on the metadata says
        # the partition is out, and a relay that trusted it would stop trying it too.
        fenced = wait_until(lambda: private_kafka.in_sync_replicas(topic, 2) == [1], timeout=60, interval=0.5)
        assert fenced, "broker 3 was never fenced"
        worker_log = processes.log("worker")
        assert f"Kafka partition {topic}-1 is unavailable" not in worker_log, (
            "partition 1, on brokers 1 and 2 alone, waited on the dead partition too"
        )
        assert f"Kafka partition {topic}-2 is available again" not in worker_log, (
            "the partition was taken back while it refused writes"
        )
        # The relay goes on probing it after the fencing, and never takes it back meanwhile.
        probe_failed = f"probe of Kafka partition {topic}-2 failed"
        probes_at_fencing = processes.log("worker").count(probe_failed)
        assert wait_until(
            lambda: processes.log("worker").count(probe_failed) > probes_at_fencing, timeout=30
        ), "no probe after the fencing"
        worker_log = processes.log("worker")
        assert f"Kafka partition {topic}-2 is available again" not in worker_log
        assert worker_log.count(f"Kafka partition {topic}-2 is unavailable") == 1
        assert _partition_waits(processes, topic, 2) == 1, "a round waited on the dead partition again"
        waiting = OutboxEvent.objects.filter(aggregate_id__in=out)
        assert set(waiting.values_list("status", flat=True)) == {OutboxStatus.PENDING}
        assert set(waiting.values_list("attempts", flat=True)) == {0}, "the partition's outage was charged"
    finally:
        private_kafka.start()
    # Back on a probe: the first event of one waiting order, then the rest in version order.
    assert wait_until(lambda: _published() == 180, timeout=90, interval=1), f"{_published()} of 180 published"
    processes.wait_for_log("worker", f"Kafka partition {topic}-2 is available again", timeout=10)
    assert _partition_waits(processes, topic, 2) == 1
    dupes = _assert_complete_and_ordered(private_kafka, topic)
    print(f"crashed replica: {5 * len(out)} events waited for a probe, uncharged; {dupes} duplicates")
