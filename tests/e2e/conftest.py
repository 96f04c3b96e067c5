"""A whole private pipeline per test: scripts/pipeline.py as a subprocess on free ports, bound to the
test database, with its own Kafka topics, consumer groups, Celery queue and chDB directory."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

from tests import services
from warehouse.gateway_credential import local_gateway_url

REPO_DIR = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    db = settings.DATABASES["default"]
    return f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@dataclass
class Pipeline:
    env: dict[str, str]
    var_dir: Path
    process: subprocess.Popen[bytes] | None = None
    roles: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def console_path(self) -> Path:
        return self.var_dir / "console.log"

    def console(self) -> str:
        return self.console_path.read_text(errors="replace") if self.console_path.exists() else ""

    def start(self, *args: str, timeout: float = 150) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        with self.console_path.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scripts.pipeline", "run", *args],
                cwd=REPO_DIR, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while "pipeline is ready" not in self.console():
            if self.process.poll() is not None:
                code = self.process.returncode
                pytest.fail(f"pipeline exited with {code} while starting:\n{self.console()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"pipeline not ready within {timeout}s:\n{self.console()[-4000:]}")
            time.sleep(0.3)

    def role_pid(self, role: str) -> int:
        match = re.search(rf"started {re.escape(role)} \(pid (\d+)\)", self.console())
        assert match, f"no pid logged for {role}:\n{self.console()[-2000:]}"
        return int(match.group(1))

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            pytest.fail(f"pipeline did not stop within 120s:\n{self.console()[-4000:]}")

    def start_role(self, *command: str) -> subprocess.Popen[bytes]:
        """Runs one role outside the supervisor (e.g. `python -m consumers sink` after starting
        with --without sink), so a test can stop and restart it while the others keep running. It
        reaches the pipeline's chDB gateway with the credential, as the supervisor's roles do:
        opening the chDB directory itself would fail, the gateway holds it."""
        log = (self.var_dir / f"role-{len(self.roles)}.log").open("ab")
        gateway = local_gateway_url(int(self.env["CLICKHOUSE_HTTP_PORT"]), self.var_dir)
        process = subprocess.Popen(
            [sys.executable, *command],
            cwd=REPO_DIR,
            env={**self.env, "CLICKHOUSE_URL": gateway},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.roles.append(process)
        return process

    def stop_role(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def script(self, *command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command), cwd=REPO_DIR, env=self.env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture
def pipeline(transactional_db: None, tmp_path: Path) -> Iterator[Pipeline]:
    """Stopped before the test's tables are flushed (it depends on transactional_db)."""
    services.require_redis()
    services.require_kafka()
    tag = uuid.uuid4().hex[:10]
    web_port, clickhouse_port = free_port(), free_port()
    # No CLICKHOUSE_URL: the scripts then reach the pipeline's chDB gateway with the credential it
    # keeps in VAR_DIR, as `make test-pipeline` does.
    env = {
        **{name: value for name, value in os.environ.items() if name != "CLICKHOUSE_URL"},
        "DJANGO_SETTINGS_MODULE": "backend.settings.base",
        "DATABASE_URL": database_url(),
        "VAR_DIR": str(tmp_path / "var"),
        "WEB_PORT": str(web_port),
        "WEB_WORKERS": "2",
        "CLICKHOUSE_HTTP_PORT": str(clickhouse_port),
        "API_URL": f"http://127.0.0.1:{web_port}",
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS),
        "ORDER_EVENTS_TOPIC": f"test-e2e-{tag}.order.events",
        "ANALYTICS_TOPIC": f"test-e2e-{tag}.orders_analytics",
        "TRANSFORMER_GROUP_ID": f"test-e2e-{tag}-transformer",
        "SINK_GROUP_ID": f"test-e2e-{tag}-sink",
        "CELERY_TASK_DEFAULT_QUEUE": f"test-e2e-{tag}",
        # A killed member's partitions move on sooner; the broker's minimum.
        "CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "PYTHONUNBUFFERED": "1",
    }
    pipe = Pipeline(env=env, var_dir=tmp_path / "var")
    yield pipe
    for role in pipe.roles:
        pipe.stop_role(role)
    pipe.stop()
