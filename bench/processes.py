"""Starting and stopping the processes a stage measures: single roles (relay, transformer, sink,
chDB gateway) and the whole local pipeline through scripts/pipeline.py, as `make run` serves it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.isolation import REPO_DIR


class BenchError(Exception):
    """A stage could not run; the message says which and why."""


class Process:
    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                command,
                cwd=REPO_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n" + "\n".join(tail))

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise BenchError(f"{self.name} did not finish within {timeout:.0f}s") from exc

    def stop(self, timeout: float = 30) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def python_role(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    return Process(name, [sys.executable, *args], env, log_dir)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


def wait_until(what: str, check: object, timeout: float, process: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if process is not None:
            process.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(0.2)


def gateway_start(env: dict[str, str], var_dir: Path, port: int, log_dir: Path) -> Process:
    gateway = python_role(
        "chdb-gateway",
        ["-m", "warehouse", "chdb-gateway", "--data-dir", str(var_dir / "chdb"), "--port", str(port)],
        env,
        log_dir,
    )
    wait_until("chdb-gateway /ping", lambda: http_ok(f"http://127.0.0.1:{port}/ping"), 60, gateway)
    subprocess.run(
        [sys.executable, "-m", "consumers", "migrate"],
        cwd=REPO_DIR,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    return gateway


def pipeline_start(env: dict[str, str], var_dir: Path, web_url: str, log_dir: Path) -> Process:
    """Every role under scripts/pipeline.py; returns once it printed its readiness block."""
    ready = var_dir / "run" / "pipeline.ready"
    ready.unlink(missing_ok=True)
    supervisor = python_role("pipeline", ["-m", "scripts.pipeline", "run"], env, log_dir)
    try:
        wait_until("pipeline readiness", ready.exists, 180, supervisor)
        wait_until("web /readyz", lambda: http_ok(f"{web_url}/readyz"), 30, supervisor)
    except BaseException:  # interrupted or not ready: never leave the roles running
        supervisor.stop(timeout=120)
        raise
    return supervisor
