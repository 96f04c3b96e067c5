"""`make clickhouse-shell` on the local stack, against a real chDB gateway process of the test's
own (its own data directory and port; chDB allows one owner per directory)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.compose_stack import REPO_DIR


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def gateway_port(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    log = (tmp_path / "gateway.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "warehouse.chdb_gateway",
            "--data-dir",
            str(tmp_path / "chdb"),
            "--port",
            str(port),
        ],
        cwd=REPO_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "VAR_DIR": str(tmp_path)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, (tmp_path / "gateway.log").read_text()
                assert time.monotonic() < deadline, "the chDB gateway did not answer /ping within 60 s"
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def shell(env: dict[str, str], *make_args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env, "CLICKHOUSE_DATABASE": "default"}
    return subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "STACK=local", "clickhouse-shell", *make_args],
        cwd=REPO_DIR,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_make_clickhouse_shell_runs_queries_through_the_gateway(gateway_port: int, tmp_path: Path) -> None:
    # No CLICKHOUSE_URL: the shell finds the gateway on its port, with the credential in VAR_DIR.
    gateway = {"CLICKHOUSE_URL": "", "CLICKHOUSE_HTTP_PORT": str(gateway_port), "VAR_DIR": str(tmp_path)}
    created = shell(
        gateway, "QUERY=CREATE TABLE shell_t (n UInt8) ENGINE = Memory; INSERT INTO shell_t VALUES (7)"
    )
    assert created.returncode == 0, created.stderr
    piped = shell(gateway, stdin="SELECT n * 6 AS answer FROM shell_t;\nSHOW TABLES;\n")
    assert piped.returncode == 0, piped.stderr
    assert "answer" in piped.stdout and "42" in piped.stdout and "shell_t" in piped.stdout

    failed = shell(gateway, "QUERY=SELECT no_such_function()")
    assert failed.returncode != 0
    assert "no_such_function" in failed.stderr

    wrong = shell(
        {**gateway, "CLICKHOUSE_URL": f"http://default:wrong@127.0.0.1:{gateway_port}"}, "QUERY=SELECT 1"
    )
    assert wrong.returncode != 0
    # Named as refused, and the password it sent is not printed.
    assert "Authentication failed" in wrong.stderr and "wrong" not in wrong.stderr


def test_make_clickhouse_shell_names_an_unreachable_server() -> None:
    result = shell({"CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}"}, "QUERY=SELECT 1")
    assert result.returncode != 0
    assert "ClickHouse is not reachable at http://127.0.0.1:" in result.stderr
