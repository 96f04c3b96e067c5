"""The benchmark's change-data-capture stage: Debezium's outbox router (kafka-connect/debezium-outbox.json,
a Kafka Connect worker started by scripts/services/connect.sh) side by side with our relay, in the
same run, on the same MariaDB database, brokers and topic settings (RF 3, min ISR 2, acks=all).

Both are measured the same way, by a consumer reading the topic the relay writes to:
- backlog: Debezium's snapshot of the whole outbox table the run has written (our relay's drain of
  its backlog is the relay stage's figure);
- streaming: orders written as fast as several service-layer writers commit them, until the last
  event is readable on Kafka;
- latency: an order's commit (its event's occurred_at) → the event readable on Kafka, at the
  latency rate, for Debezium, our relay with the on-commit kick and our relay on beat alone;
- CPU seconds per 1,000 events of the relay's processes (the Connect JVM, or the Celery worker and
  its children) and their peak RSS.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import Any

import psutil

from bench.isolation import REPO_DIR
from bench.processes import BenchError, Process, python_role
from bench.stages import Context, distribution
from bench.workload import service_order_create


class TopicReader(threading.Thread):
    """Reads a topic from its start: how many records arrived, when the last did, and for the
    records of events that occurred after `mark` how long after their occurred_at each arrived."""

    def __init__(self, servers: list[str], topic: str) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        partitions = self._consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise BenchError(f"topic {topic} has no partitions")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        self._consumer.seek_to_beginning(*assigned)
        self.count = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.mark = float("inf")
        self.latencies_ms: list[float] = []
        self._done = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._done.is_set():
            batches = self._consumer.poll(timeout_ms=100, max_records=5000)
            now = time.time()
            for records in batches.values():
                for record in records:
                    with self._lock:
                        self.count += 1
                        self.first_at = self.first_at or now
                        self.last_at = now
                    occurred = _occurred_at(record.value)
                    if occurred >= self.mark:
                        self.latencies_ms.append((now - occurred) * 1000)
        self._consumer.close()

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count < count:
            if time.monotonic() > deadline:
                raise BenchError(f"{self.count} of {count} events reached Kafka within {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def _occurred_at(value: bytes) -> float:
    text = json.loads(value)["occurred_at"]
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class CpuMeter:
    """CPU seconds and peak RSS of a process tree, sampled while it runs."""

    def __init__(self, pids: list[int]) -> None:
        self._roots = [psutil.Process(pid) for pid in pids]
        self.peak_rss_mb = 0.0
        self._cpu: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _tree(self) -> list[psutil.Process]:
        found = []
        for root in self._roots:
            try:
                found += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return found

    def sample(self) -> None:
        rss = 0.0
        for process in self._tree():
            try:
                times = process.cpu_times()
                self._cpu[process.pid] = times.user + times.system
                rss += process.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
        self.peak_rss_mb = max(self.peak_rss_mb, rss)

    def cpu_seconds(self) -> float:
        self.sample()
        return sum(self._cpu.values())

    def _loop(self) -> None:
        while not self._done.wait(0.5):
            self.sample()

    def __enter__(self) -> CpuMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)


def write_orders(ctx: Context, count: int, writers: int, first: int) -> float:
    """`count` orders through the service layer from `writers` threads; returns when they are all
    committed, with the seconds it took."""
    from django.db import connection

    def writer(index: int) -> None:
        try:
            for n in range(first + index, first + count, writers):
                service_order_create(ctx.catalogue, n)
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def write_at_rate(ctx: Context, rate: float, seconds: float, first: int) -> int:
    count = int(rate * seconds)
    started = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
        service_order_create(ctx.catalogue, first + n)
    return count


def events_written() -> int:
    from outbox.models import OutboxEvent

    return OutboxEvent.objects.count()


def measure_relay(
    ctx: Context, reader: TopicReader, cpu: CpuMeter, first: int, writers: int
) -> dict[str, Any]:
    """Streaming throughput, then latency at the latency rate, for the relay whose topic `reader`
    reads and whose processes `cpu` meters."""
    sizes = ctx.sizes
    base = reader.count
    before = cpu.cpu_seconds()
    started = time.time()
    write_seconds = write_orders(ctx, sizes.service_orders, writers, first)
    reader.wait_for(base + sizes.service_orders, 300)
    streamed = sizes.service_orders
    seconds = reader.last_at - started
    cpu_streaming = cpu.cpu_seconds() - before

    reader.mark = time.time()
    base = reader.count
    sent = write_at_rate(ctx, sizes.latency_rate, sizes.latency_seconds, first + streamed)
    reader.wait_for(base + sent, 120)
    return {
        "streaming": {
            "orders": streamed,
            "writers": writers,
            "write_orders_per_s": round(streamed / write_seconds, 1),
            "events_per_s": round(streamed / seconds, 1),
            "cpu_s_per_1000_events": round(cpu_streaming / streamed * 1000, 2),
        },
        "latency": {**distribution(reader.latencies_ms), "orders_per_s": sizes.latency_rate},
        "peak_rss_mb": round(cpu.peak_rss_mb, 1),
    }


def connect_env(ctx: Context) -> dict[str, str]:
    env = ctx.env()
    # The services' own VAR_DIR (MariaDB's socket, the installed jars); the worker's files in the run's.
    env.pop("VAR_DIR", None)
    env.update(
        CONNECT_DIR=str(ctx.isolation.var_dir / "connect"),
        CONNECT_PORT=str(random.randrange(18100, 18900)),
        DEBEZIUM_DATABASE=ctx.isolation.database_name,
        DEBEZIUM_SERVER_ID=str(random.randrange(5500, 6500)),
        DEBEZIUM_SNAPSHOT_MODE="initial",
    )
    return env


def _script(command: list[str], env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(command, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def worker_pid(env: dict[str, str]) -> int:
    directory = os.path.join(env["CONNECT_DIR"], "worker.properties")
    for process in psutil.process_iter(["pid", "cmdline"]):
        if directory in (process.info["cmdline"] or []):
            return int(process.info["pid"])
    raise BenchError("the Kafka Connect worker is not running")


def stage_debezium(ctx: Context) -> dict[str, Any]:
    from django.conf import settings

    from orders.models import Order
    from outbox.models import OutboxEvent, OutboxStatus

    saved_phase = dict(ctx.phase_env)
    ctx.fresh_phase("debezium")
    env = ctx.env()
    servers = env["KAFKA_BOOTSTRAP_SERVERS"].split(",")
    _script([sys.executable, "manage.py", "kafka_topics"], env, 120)
    result: dict[str, Any] = {}
    first = (Order.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    writers = 4
    try:
        # Debezium: its snapshot of every outbox row the run wrote, then its binary-log stream.
        cdc = connect_env(ctx)
        _script(["bash", "scripts/services/mariadb.sh", "grant-cdc", ctx.isolation.database_name], cdc, 30)
        backlog = events_written()
        reader = TopicReader(servers, env["ORDER_EVENTS_TOPIC"])
        reader.start()
        started = time.time()
        _script(["bash", "scripts/services/connect.sh", "start"], cdc, 180)
        try:
            with CpuMeter([worker_pid(cdc)]) as cpu:
                reader.wait_for(backlog, 3600)
                snapshot_cpu = cpu.cpu_seconds()  # since the worker's launch: its start-up counts
                result["snapshot"] = {
                    "events": backlog,
                    "seconds_from_start": round(reader.last_at - started, 1),
                    "events_per_s": round(backlog / max(1e-3, reader.last_at - reader.first_at), 1),
                    "cpu_s_per_1000_events": round(snapshot_cpu / backlog * 1000, 2),
                }
                result["debezium"] = measure_relay(ctx, reader, cpu, first, writers)
        finally:
            _script(["bash", "scripts/services/connect.sh", "stop"], cdc, 60)
            reader.stop()
        first += ctx.sizes.service_orders + int(ctx.sizes.latency_rate * ctx.sizes.latency_seconds)
        # Debezium published them: our relay must not send them again.
        OutboxEvent.objects.filter(status=OutboxStatus.PENDING).update(status=OutboxStatus.PUBLISHED)

        # Our relay, the Celery worker as the pipeline runs it, with the kick, then on beat alone.
        for label, kick in (("ours_kick", "1"), ("ours_beat", "0")):
            ctx.fresh_phase(f"debezium-{label}")
            env = ctx.env(OUTBOX_KICK_ON_COMMIT=kick)
            _script([sys.executable, "manage.py", "kafka_topics"], env, 120)
            settings.OUTBOX_KICK_ON_COMMIT = kick == "1"  # the harness's own writes kick (or not)
            reader = TopicReader(servers, env["ORDER_EVENTS_TOPIC"])
            reader.start()
            roles = relay_roles(ctx, env, label, beat=True)
            try:
                time.sleep(3)  # the worker joins its queue
                with CpuMeter([role.pid for role in roles]) as cpu:
                    result[label] = measure_relay(ctx, reader, cpu, first, writers)
            finally:
                for role in roles:
                    role.stop(timeout=60)
                reader.stop()
                settings.OUTBOX_KICK_ON_COMMIT = False
            first += ctx.sizes.service_orders + int(ctx.sizes.latency_rate * ctx.sizes.latency_seconds)
    finally:
        ctx.phase_env = saved_phase
    return result


def relay_roles(ctx: Context, env: dict[str, str], label: str, beat: bool) -> list[Process]:
    queue = env["CELERY_TASK_DEFAULT_QUEUE"]
    roles = [
        python_role(
            f"relay-{label}",
            ["-m", "celery", "-A", "backend", "worker", "--loglevel", "WARNING", "--queues", queue,
             "--concurrency", "2", "--hostname", f"relay-{label}-{os.getpid()}@%h"],
            env, ctx.log_dir,
        ),
    ]  # fmt: skip
    if beat:
        schedule = str(ctx.isolation.var_dir / f"celerybeat-{label}")
        command = ["-m", "celery", "-A", "backend", "beat", "--loglevel", "WARNING", "--schedule", schedule]
        roles.append(python_role(f"beat-{label}", [*command, "--pidfile", ""], env, ctx.log_dir))
    return roles
