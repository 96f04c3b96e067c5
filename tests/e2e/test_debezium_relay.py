"""Debezium's outbox router as the relay (kafka-connect/debezium-outbox.json): a Kafka Connect worker
reads the outbox table from MariaDB's binary log, and the pipeline's own transformer and sink,
unchanged, bring its records to ClickHouse. No relay of ours runs: test-pipeline (told that no
row gets marked published) and the deletion flow pass, and the worker leaves no process behind."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.e2e.conftest import REPO_DIR, Pipeline, free_port

pytestmark = pytest.mark.django_db(transaction=True)


def _run(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=timeout)


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"


def test_debezium_relays_the_outbox_through_our_consumers_to_every_view(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # Everything but our relay: the Celery worker relays, beat schedules it.
    pipeline.start("--without", "worker", "--without", "beat")
    database = str(settings.DATABASES["default"]["NAME"])
    # The scripts' own VAR_DIR (the services' sockets, the installed jars), a worker of its own.
    env = {
        **{name: value for name, value in os.environ.items() if name not in ("VAR_DIR", "CLICKHOUSE_URL")},
        "CONNECT_DIR": str(tmp_path / f"connect-{uuid.uuid4().hex[:8]}"),
        "CONNECT_PORT": str(free_port()),
        "DEBEZIUM_DATABASE": database,
        "DEBEZIUM_SERVER_ID": str(random.randrange(5500, 6500)),
        "ORDER_EVENTS_TOPIC": pipeline.env["ORDER_EVENTS_TOPIC"],
        "KAFKA_BOOTSTRAP_SERVERS": pipeline.env["KAFKA_BOOTSTRAP_SERVERS"],
    }
    grant = _run(["bash", "scripts/services/mariadb.sh", "grant-cdc", database], env, 30)
    assert grant.returncode == 0, _report(grant)
    started = _run(["bash", "scripts/services/connect.sh", "start"], env, 150)
    try:
        assert started.returncode == 0, _report(started)
        checked = pipeline.script(
            sys.executable, "-m", "scripts.check_pipeline", "--orders", "60", "--relay", "cdc",
            "--timeout", "120", timeout=300,
        )  # fmt: skip
        assert checked.returncode == 0, _report(checked)
        out = checked.stdout
        assert "ClickHouse rows      60 of 60 orders at their MySQL version" in out
        # Nothing of ours touched the rows: Debezium read them all while they stayed pending.
        assert "outbox               published 0, pending " in out
        assert "PASS: 60 orders reached ClickHouse and every view" in out

        deletion = pipeline.script("bash", "scripts/test-deletion-flow.sh", "--orders", "3", timeout=300)
        assert deletion.returncode == 0, _report(deletion)
        assert "PASS: deleted orders" in deletion.stdout
    finally:
        stopped = _run(["bash", "scripts/services/connect.sh", "stop"], env, 60)
        assert stopped.returncode == 0, _report(stopped)
    status = _run(["bash", "scripts/services/connect.sh", "status"], env, 30)
    assert status.returncode == 3, _report(status)
