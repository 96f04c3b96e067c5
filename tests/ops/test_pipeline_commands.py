"""What `make run` and `make pipeline-start` tell a newcomer once the pipeline is up, and `make stop`
stopping both the pipeline and the local services. The shared services are never touched: the
pipeline and the Redis that `make stop` stops here run under the test's own VAR_DIR and ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scripts.pipeline import READY_MARKER, Config, readiness_block
from tests.ops.compose_stack import REPO_DIR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A child that exited but was not reaped yet is no running process either.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def test_the_readiness_block_says_which_pages_to_open_with_which_login_and_what_is_compose_only() -> None:
    config = Config.from_env({"VAR_DIR": "/srv/shop/var", "WEB_PORT": "8800"}, without=["sink"])
    block = readiness_block(config)
    first, *lines = block.splitlines()
    assert first == f"{READY_MARKER}: chdb-gateway, transformer, worker, watermark, beat, web"
    for path in ("/api/docs", "/api/orders", "/api/analytics/overview", "/metrics", "/admin/"):
        assert f"http://127.0.0.1:8800{path} " in block or f"http://127.0.0.1:8800{path}\n" in block, path
    admin = next(line for line in lines if "http://127.0.0.1:8800/admin/" in line)
    assert "staff user" in admin and "createsuperuser" in admin
    token = next(i for i, line in enumerate(lines) if "create_admin_token <staff username>" in line)
    assert "X-Admin-Id" in lines[token] + lines[token + 1]
    grafana = next(line for line in lines if "Grafana" in line)
    assert "Kafka UI" in grafana and "compose stack only" in grafana
    assert "/srv/shop/var/log/<role>.log" in block
    stop = block[block.index("  stop ") :]
    assert "make pipeline-stop" in stop and "make services-stop" in stop and "make stop" in stop


@pytest.fixture
def private_env(tmp_path: Path, make_topic: Callable[..., str], kafka_bootstrap: list[str]) -> dict[str, str]:
    return {
        **os.environ,
        "VAR_DIR": str(tmp_path / "var"),
        "REDIS_PORT": str(free_port()),
        # The gateway alone: the cheapest pipeline that goes through the whole start.
        "PIPELINE_ROLES": "chdb-gateway",
        "CLICKHOUSE_HTTP_PORT": str(free_port()),
        "WEB_PORT": str(free_port()),
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(kafka_bootstrap),
        "ORDER_EVENTS_TOPIC": make_topic("test-pipeline-events"),
        "ANALYTICS_TOPIC": make_topic("test-pipeline-analytics"),
    }


@pytest.fixture
def cleanup(private_env: dict[str, str]) -> Iterator[None]:
    yield
    for command in (
        [sys.executable, "-m", "scripts.pipeline", "stop"],
        ["bash", "scripts/services/redis.sh", "stop"],
    ):
        subprocess.run(command, cwd=REPO_DIR, env=private_env, capture_output=True, timeout=120)


@pytest.mark.usefixtures("cleanup")
def test_pipeline_start_prints_the_readiness_block_and_make_stop_stops_the_pipeline_and_services(
    private_env: dict[str, str],
) -> None:
    def run(*command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command), cwd=REPO_DIR, env=private_env, capture_output=True, text=True, timeout=timeout
        )

    redis = run("bash", "scripts/services/redis.sh", "start", timeout=60)
    assert redis.returncode == 0, redis.stdout + redis.stderr
    started = run(sys.executable, "-m", "scripts.pipeline", "run", "--detach", timeout=240)
    assert started.returncode == 0, started.stdout + started.stderr
    assert readiness_block(Config.from_env(private_env, without=[])) in started.stdout
    run_dir = Path(private_env["VAR_DIR"]) / "run"
    pipeline_pid = int((run_dir / "pipeline.pid").read_text())
    redis_pid = int((run_dir / "redis.pid").read_text())

    stopped = run("make", "-s", "stop", timeout=240)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"pipeline stopped (pid {pipeline_pid})" in stopped.stdout
    assert "Redis stopped" in stopped.stdout
    assert not alive(pipeline_pid) and not alive(redis_pid)
    assert stopped.stdout.index("pipeline stopped") < stopped.stdout.index("Redis stopped")
