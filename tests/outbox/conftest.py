"""Fixtures for the outbox relay tests: orders built through the orders app's own fixtures, outbox
rows in bulk, a reader for a Kafka topic, and real Celery worker / beat / relay subprocesses that
use this run's test database, a unique topic and a unique Celery queue."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from outbox.models import OutboxEvent
from scripts.kafka_cluster import ClusterError, PrivateKafka
from tests import services
from tests.orders.conftest import customer, make_customer, make_order, make_product  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CELERY = str(Path(sys.executable).with_name("celery"))


# --- Kafka records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    key: str
    event: dict[str, Any]
    headers: dict[str, str]
    partition: int
    offset: int


def read_topic(
    topic: str,
    *,
    bootstrap: list[str],
    expected: int,
    timeout: float = 30.0,
    settle: float = 1.0,
) -> list[Record]:
    """Reads the topic from the beginning until ``expected`` records arrived (or the timeout
    passed), then keeps reading ``settle`` more seconds so extra records are seen too."""
    import json

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=500,
    )
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while True:
            now = time.monotonic()
            if settle_until is None and len(records) >= expected:
                settle_until = now + settle
            if (settle_until is not None and now >= settle_until) or now >= deadline:
                break
            for batch in consumer.poll(timeout_ms=300).values():
                for message in batch:
                    records.append(
                        Record(
                            key=message.key.decode(),
                            event=json.loads(message.value),
                            headers={k: v.decode() for k, v in message.headers},
                            partition=message.partition,
                            offset=message.offset,
                        )
                    )
    finally:
        consumer.close()
    return records


def first_occurrence_versions(records: list[Record]) -> dict[str, list[int]]:
    """Per order, the versions in the order they first appear (partition order; one order lives
    on one partition because the key is the order id)."""
    seen: set[str] = set()
    versions: dict[str, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.event["event_id"] in seen:
            continue
        seen.add(record.event["event_id"])
        versions.setdefault(record.key, []).append(record.event["aggregate_version"])
    return versions


def duplicates(records: list[Record]) -> int:
    return len(records) - len({r.event["event_id"] for r in records})


# --- outbox rows in bulk ------------------------------------------------------------------------


def insert_outbox_events(
    *, orders: int, versions: int, first_order: int = 1, seed: int = 7
) -> list[OutboxEvent]:
    """Writes orders x versions pending events, interleaved across orders the way concurrent
    writers commit them (each order's versions in increasing id order)."""
    slots = [order for order in range(first_order, first_order + orders) for _ in range(versions)]
    random.Random(seed).shuffle(slots)
    next_version: dict[int, int] = {}
    now = timezone.now()
    rows = []
    for order in slots:
        version = next_version.get(order, 0) + 1
        next_version[order] = version
        rows.append(
            OutboxEvent(
                event_type="OrderCreated" if version == 1 else "OrderStatusChanged",
                aggregate_type="order",
                aggregate_id=str(order),
                aggregate_version=version,
                occurred_at=now,
                payload={"order_id": order, "version": version},
            )
        )
    return OutboxEvent.objects.bulk_create(rows, batch_size=2000)


# --- subprocesses -------------------------------------------------------------------------------


def database_url() -> str:
    db = settings.DATABASES["default"]
    return f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@dataclass
class Processes:
    """Subprocesses of one test; each one's output goes to a file that failures print."""

    workdir: Path
    base_env: dict[str, str]
    started: list[tuple[str, subprocess.Popen[bytes], Path]]

    def env(self, **overrides: object) -> dict[str, str]:
        env = dict(self.base_env)
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    def start(self, name: str, args: list[str], **env: object) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        process = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=self.env(**env),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append((name, process, log))
        return process

    def worker(self, name: str = "worker", concurrency: int = 1, **env: object) -> subprocess.Popen[bytes]:
        queue = self.base_env["CELERY_TASK_DEFAULT_QUEUE"]
        return self.start(
            name,
            [CELERY, "-A", "backend", "worker", "--loglevel", "INFO", "--pool", "prefork",
             "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"{name}-{queue}@%h"],
            **env,
        )  # fmt: skip

    def beat(self, **env: object) -> subprocess.Popen[bytes]:
        return self.start(
            "beat",
            [CELERY, "-A", "backend", "beat", "--loglevel", "INFO",
             "--schedule", str(self.workdir / "beat-schedule")],
            **env,
        )  # fmt: skip

    def relay_command(
        self, *args: str, timeout: float = 60.0, **env: object
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "manage.py", "outbox_relay", *args],
            cwd=REPO_ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self, name: str) -> str:
        for started_name, _, path in self.started:
            if started_name == name:
                return path.read_text(errors="replace")
        raise KeyError(name)

    def wait_for_log(self, name: str, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log(name):
                return
            for started_name, process, _ in self.started:
                if started_name == name and process.poll() is not None:
                    pytest.fail(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")
            time.sleep(0.2)
        pytest.fail(f"{name} did not log {needle!r} within {timeout}s:\n{self.log(name)[-3000:]}")

    def stop_all(self) -> None:
        for _, process, _ in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process, _ in reversed(self.started):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)

    def dump(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{path.read_text(errors='replace')[-4000:]}" for name, _, path in self.started
        )


@pytest.fixture
def processes(transactional_db: None, request: pytest.FixtureRequest) -> Iterator[Processes]:
    """Subprocess launcher bound to this test's database; stops everything before the test's
    tables are flushed. Needs ``transactional_db`` so rows the test writes are committed."""
    services.require_redis()
    queue = f"test-outbox-{uuid.uuid4().hex[:10]}"
    workdir = Path(tempfile.mkdtemp(prefix="outbox-test-"))
    base_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings.base",
        "DATABASE_URL": database_url(),
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS),
        "OUTBOX_KICK_ON_COMMIT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    procs = Processes(workdir=workdir, base_env=base_env, started=[])
    yield procs
    procs.stop_all()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(procs.dump())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def scrape_metrics() -> str:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --- a private Kafka cluster that tests may break -------------------------------------------------


@pytest.fixture(scope="module")
def private_kafka() -> Iterator[PrivateKafka]:
    """A 3-node cluster on its own ports and data directory (scripts/kafka_cluster.py), so tests
    can stop brokers without disturbing the shared cluster."""
    try:
        cluster = PrivateKafka.create()
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
