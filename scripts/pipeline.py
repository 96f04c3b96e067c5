"""The local pipeline supervisor behind `make run`: every role of the pipeline as child processes.

    python -m scripts.pipeline run [--without ROLE ...] [--detach]
    python -m scripts.pipeline stop | status

Roles, in start order: chdb-gateway (the only process that opens the chDB data directory; every
other role reaches ClickHouse over its HTTP interface), sink, transformer, worker (Celery),
watermark (the freshness watermark's checks, apart from the relay's worker), beat (Celery), web
(gunicorn). Each role logs to $VAR_DIR/log/<role>.log and, prefixed with its name, to
the console. When every role is up the supervisor prints a readiness block; if a role dies it names
the role, prints the tail of its log, stops the others and exits 1. Ctrl-C or SIGTERM stops the
roles in reverse order (web and beat first, sink and gateway last) and exits 0.

Everything is configurable by environment (README, "Running the pipeline"), so tests run a whole
private pipeline on free ports, their own database, topics, consumer groups and chDB directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

import environment
from consumers.kafka_compat import forget_group_coordinator, partition_leader
from consumers.kafka_io import retrying
from consumers.settings import ConsumerSettings
from environment import SettingsError, env_int, env_str
from environment.local_secret import ensure_local_secret_key, secret_key_file
from warehouse.gateway_credential import CredentialError, local_gateway_url, password_file

REPO_DIR = Path(__file__).resolve().parent.parent
ROLE_ORDER = ("chdb-gateway", "sink", "transformer", "worker", "watermark", "beat", "web")
# Web and beat stop first (no new work comes in), the gateway last (the sink may still be writing).
STOP_ORDER = ("web", "beat", "watermark", "worker", "transformer", "sink", "chdb-gateway")
READY_MARKER = "pipeline is ready"


class PipelineError(Exception):
    """Something that stops the pipeline, in words for the operator."""


@dataclass(frozen=True)
class Config:
    var_dir: Path
    web_host: str
    web_port: int
    web_workers: int
    web_threads: int
    clickhouse_port: int
    worker_concurrency: int
    roles: tuple[str, ...]
    ready_timeout: float
    stop_timeout: float

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "pipeline.pid"

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"

    @property
    def clickhouse_url(self) -> str:
        return f"http://127.0.0.1:{self.clickhouse_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str], without: list[str]) -> Config:
        def number(name: str, default: int) -> int:
            try:
                return env_int(name, default, env, minimum=1)
            except SettingsError as exc:
                raise PipelineError(str(exc)) from exc

        requested = env.get("PIPELINE_ROLES", "") or ",".join(ROLE_ORDER)
        names = [r.strip() for r in requested.split(",") if r.strip()]
        unknown = sorted(set(names + without) - set(ROLE_ORDER))
        if unknown:
            raise PipelineError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLE_ORDER)}")
        roles = tuple(r for r in ROLE_ORDER if r in names and r not in without)
        return cls(
            var_dir=environment.var_dir(env),
            web_host=env_str("WEB_HOST", "127.0.0.1", env),
            web_port=number("WEB_PORT", 8000),
            web_workers=number("WEB_WORKERS", 3),
            web_threads=number("WEB_THREADS", 4),
            clickhouse_port=number("CLICKHOUSE_HTTP_PORT", 8123),
            worker_concurrency=number("CELERY_WORKER_CONCURRENCY", 2),
            roles=roles,
            ready_timeout=float(number("PIPELINE_READY_TIMEOUT", 90)),
            stop_timeout=float(number("PIPELINE_STOP_TIMEOUT", 15)),
        )


def role_commands(config: Config) -> dict[str, list[str]]:
    py = sys.executable
    queue = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
    return {
        "chdb-gateway": [
            py, "-m", "warehouse", "chdb-gateway",
            "--data-dir", str(config.var_dir / "chdb"), "--port", str(config.clickhouse_port),
        ],
        "sink": [py, "-m", "consumers", "sink"],
        "transformer": [py, "-m", "consumers", "transformer"],
        "worker": [
            py, "-m", "celery", "-A", "backend", "worker", "--loglevel", "INFO", "--queues", queue,
            "--concurrency", str(config.worker_concurrency), "--hostname", f"relay-{os.getpid()}@%h",
        ],
        # Its own process: a check waiting on Kafka or the database never delays the relay.
        "watermark": [py, "manage.py", "pipeline_watermark"],
        "beat": [
            py, "-m", "celery", "-A", "backend", "beat", "--loglevel", "INFO",
            "--schedule", str(config.run_dir / "celerybeat-schedule"),
            "--pidfile", "",
        ],
        "web": [
            py, "-m", "gunicorn", "backend.wsgi", "--bind", f"{config.web_host}:{config.web_port}",
            # Threaded workers: a request spends most of its time waiting on MariaDB round trips,
            # which threads overlap, and they keep client connections alive between requests (a
            # sync worker closes the connection after every request, and gunicorn 27 then lingers
            # until the client has closed its side before it takes the next one).
            "--workers", str(config.web_workers), "--worker-class", "gthread",
            "--threads", str(config.web_threads), "--timeout", "60", "--graceful-timeout", "10",
        ],
    }  # fmt: skip


def child_env(config: Config) -> dict[str, str]:
    try:
        # Created here on the first start, so the gateway and every role share it from the start.
        clickhouse_url = local_gateway_url(config.clickhouse_port, config.var_dir)
    except (CredentialError, OSError) as exc:
        raise PipelineError(f"the chDB gateway's credential: {exc}") from exc
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "VAR_DIR": str(config.var_dir),
            # Every role but the gateway reaches ClickHouse the way it would reach a server,
            # with the gateway's credential.
            "CLICKHOUSE_URL": clickhouse_url,
        }
    )
    return env


@dataclass
class Role:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)


class Console:
    """Foreman-style output: one lock so lines of different roles never interleave mid-line."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def line(self, source: str, text: str) -> None:
        with self._lock:
            self._stream.write(f"{source:<13}| {text}\n")
            self._stream.flush()


def _pump(role: Role, console: Console) -> None:
    assert role.process.stdout is not None
    with role.log_path.open("ab") as log:
        for raw in iter(role.process.stdout.readline, b""):
            log.write(raw)
            log.flush()
            console.line(role.name, raw.decode("utf-8", "replace").rstrip())


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


def topics_visible_on_every_broker() -> bool:
    """True when each bootstrap broker reports partitions for every topic of the pipeline.

    A broker learns a new topic from the KRaft quorum a moment after it was created; a consumer
    whose group is assigned while its broker still lacks the topic gets no partitions and, with
    the client's default metadata refresh, sits idle for five minutes. So consumers start only
    once every broker knows the topics."""
    settings = ConsumerSettings.from_env()
    topics = (settings.order_events_topic, settings.analytics_topic)
    for server in settings.kafka_bootstrap_servers:
        consumer = KafkaConsumer(bootstrap_servers=[server], request_timeout_ms=5000)
        try:
            for topic in topics:
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    return False
                # A partition whose leader is not elected yet is no partition to a consumer.
                leaders = [partition_leader(consumer, TopicPartition(topic, p)) for p in partitions]
                if any(leader is None or leader < 0 for leader in leaders):
                    return False
        except Exception:
            return False
        finally:
            consumer.close()
    return True


def assigned_partitions(group: str) -> int:
    """How many partitions the members of a consumer group own right now."""
    servers = ConsumerSettings.from_env().kafka_bootstrap_servers
    admin = KafkaAdminClient(
        bootstrap_servers=servers, client_id="pipeline-supervisor", request_timeout_ms=5000
    )
    try:
        described = retrying(
            f"describing group {group}",
            lambda: admin.describe_groups([group]),
            on_retry=lambda _: forget_group_coordinator(admin, group),
        ).get(group, {})
    finally:
        admin.close()
    return sum(
        len(assigned["partitions"])
        for member in described.get("members", [])
        for assigned in (member.get("member_assignment") or {}).get("assigned_partitions", [])
    )


def readiness_block(config: Config) -> str:
    """What a person needs once the pipeline is up: the pages to open and with which login, how to
    get an admin API token, what this local stack lacks, where the logs are and how to stop it.
    `make run` and `make pipeline-start` print the same block."""
    web = config.web_url
    return "\n".join(
        [
            f"{READY_MARKER}: {', '.join(config.roles)}",
            "  open (no login unless said)",
            f"    API docs        {web}/api/docs",
            f"    orders API      {web}/api/orders  login: an admin token (below) or Django admin's session",
            f"    analytics API   {web}/api/analytics/overview",
            f"    metrics         {web}/metrics",
            f"    Django admin    {web}/admin/  login: a staff user (manage.py createsuperuser)",
            f"    ClickHouse HTTP {config.clickhouse_url}  (make clickhouse-shell; user default,",
            f"                    password in {password_file(config.var_dir)})",
            "  admin API         .venv/bin/python manage.py create_admin_token <staff username>",
            "                    prints the token and the user id to send with it as X-Admin-Id",
            "  Grafana, Kafka UI compose stack only (make up, with a Docker engine); not in this pipeline",
            f"  logs              {config.log_dir}/<role>.log  (make logs)",
            "  check it          make test-pipeline N=1000   ·   make test-deletion-flow",
            "  stop              Ctrl-C or make pipeline-stop: these roles; MariaDB, Redis and Kafka keep",
            "                    running until make services-stop; make stop: the roles and the services",
        ]
    )


class Supervisor:
    def __init__(self, config: Config, console: Console) -> None:
        self.config = config
        self.console = console
        self.roles: dict[str, Role] = {}
        self.stopping = threading.Event()
        self.env = child_env(config)

    def say(self, text: str) -> None:
        self.console.line("pipeline", text)

    def start(self, name: str) -> None:
        log_path = self.config.log_dir / f"{name}.log"
        process = subprocess.Popen(
            role_commands(self.config)[name],
            cwd=REPO_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C at the terminal reaches the supervisor only, which then
            # stops the roles in order instead of all at once.
            start_new_session=True,
        )
        role = Role(name, process, log_path)
        self.roles[name] = role
        threading.Thread(target=_pump, args=(role, self.console), daemon=True).start()
        self.say(f"started {name} (pid {process.pid}), log {log_path}")

    def dead_role(self) -> Role | None:
        return next((r for r in self.roles.values() if r.process.poll() is not None), None)

    def wait_until(self, what: str, check: Callable[[], bool], deadline: float) -> None:
        while not check():
            if self.stopping.is_set():
                raise PipelineError("stopped while starting")
            dead = self.dead_role()
            if dead is not None:
                raise RoleDied(dead)
            if time.monotonic() > deadline:
                raise PipelineError(f"{what} not ready within {self.config.ready_timeout:.0f}s")
            time.sleep(0.2)

    def run_step(self, name: str, command: list[str]) -> None:
        """A one-shot preparation step (idempotent), its output on the console like a role's."""
        self.say(f"{name}: {' '.join(command[1:])}")
        result = subprocess.run(
            command, cwd=REPO_DIR, env=self.env, capture_output=True, text=True, timeout=120
        )
        for text in (result.stdout + result.stderr).splitlines():
            self.console.line(name, text)
        if result.returncode != 0:
            raise PipelineError(f"{name} failed with exit code {result.returncode}")

    def start_all(self) -> None:
        config = self.config
        deadline = time.monotonic() + config.ready_timeout
        py = sys.executable
        if "web" in config.roles or "worker" in config.roles:
            self.run_step("kafka-topics", [py, "manage.py", "kafka_topics"])
        self.wait_until("Kafka topic metadata on every broker", topics_visible_on_every_broker, deadline)
        if "chdb-gateway" in config.roles:
            self.start("chdb-gateway")
            self.wait_until("chdb-gateway", lambda: _http_ok(f"{config.clickhouse_url}/ping"), deadline)
            self.run_step("clickhouse-ddl", [py, "-m", "consumers", "migrate"])
        for name in config.roles:
            if name != "chdb-gateway":
                self.start(name)
        if "web" in config.roles:
            self.wait_until("web (/readyz)", lambda: _http_ok(f"{config.web_url}/readyz"), deadline)
        self.ensure_consumers_own_partitions(deadline)
        # A role that survives its first seconds has read its settings and reached its services.
        self.wait_until(
            "roles",
            lambda: all(time.monotonic() - r.started_at > 3 for r in self.roles.values()),
            deadline,
        )

    def ensure_consumers_own_partitions(self, deadline: float) -> None:
        """A consumer whose group was assigned before its client had the topic's metadata owns no
        partitions until the client's next metadata refresh (five minutes): restart it instead."""
        settings = ConsumerSettings.from_env(self.env)
        groups = {"transformer": settings.transformer_group_id, "sink": settings.sink_group_id}
        for name, group in groups.items():
            if name not in self.config.roles:
                continue
            for _attempt in range(3):
                owns_partitions = lambda g=group: assigned_partitions(g) > 0  # noqa: E731
                try:
                    self.wait_until(
                        f"{name} partitions", owns_partitions, min(deadline, time.monotonic() + 20)
                    )
                    break
                except RoleDied:
                    raise
                except PipelineError:
                    if self.stopping.is_set() or time.monotonic() > deadline:
                        raise
                    self.say(f"{name} owns no partitions of its topic yet; restarting it")
                    self.restart(name)
            else:
                raise PipelineError(f"{name} never got partitions of its topic (consumer group {group})")

    def restart(self, name: str) -> None:
        process = self.roles[name].process
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.config.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        self.start(name)

    def watch(self) -> None:
        while not self.stopping.wait(0.5):
            dead = self.dead_role()
            if dead is not None:
                raise RoleDied(dead)

    def stop_all(self) -> None:
        for name in STOP_ORDER:
            role = self.roles.get(name)
            if role is None or role.process.poll() is not None:
                continue
            role.process.send_signal(signal.SIGTERM)
            try:
                role.process.wait(timeout=self.config.stop_timeout)
                self.say(f"stopped {name} (exit {role.process.returncode})")
            except subprocess.TimeoutExpired:
                os.killpg(role.process.pid, signal.SIGKILL)
                role.process.wait(timeout=10)
                self.say(f"killed {name}: it did not stop within {self.config.stop_timeout:.0f}s")


class RoleDied(PipelineError):
    def __init__(self, role: Role) -> None:
        super().__init__(f"role {role.name} exited with code {role.process.returncode}")
        self.role = role


def run(config: Config) -> int:
    for directory in (config.log_dir, config.run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    # The roles' Django settings read the local stack's key when DJANGO_SECRET_KEY is unset.
    ensure_local_secret_key(secret_key_file(config.var_dir))
    console = Console(sys.stdout)
    try:
        supervisor = Supervisor(config, console)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum: int, frame: object) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    config.pid_file.write_text(str(os.getpid()))
    code = 0
    try:
        supervisor.start_all()
        print(readiness_block(config), flush=True)
        (config.run_dir / "pipeline.ready").write_text(str(os.getpid()))
        supervisor.watch()
        supervisor.say("stopping (signal received)")
    except RoleDied as exc:
        time.sleep(0.3)  # let the log pump write the role's last lines
        supervisor.say(f"FAILED: {exc}; last lines of {exc.role.log_path}:")
        for text in log_tail(exc.role.log_path).splitlines():
            console.line(exc.role.name, text)
        code = 1
    except PipelineError as exc:
        supervisor.say(f"FAILED: {exc}")
        code = 0 if supervisor.stopping.is_set() else 1
    finally:
        supervisor.stop_all()
        for path in (config.pid_file, config.run_dir / "pipeline.ready"):
            path.unlink(missing_ok=True)
    supervisor.say(f"stopped (exit {code})")
    return code


def _running_pid(config: Config) -> int | None:
    try:
        pid = int(config.pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def detach(config: Config, argv: list[str]) -> int:
    """Starts the supervisor in the background and returns once it is ready (or has failed)."""
    if _running_pid(config) is not None:
        print(f"pipeline already running (pid {_running_pid(config)}); `make stop` first", file=sys.stderr)
        return 1
    config.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.log_dir / "pipeline.log"
    ready_file = config.run_dir / "pipeline.ready"
    ready_file.unlink(missing_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.pipeline", "run", *argv],
            cwd=REPO_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + config.ready_timeout + 30
    while time.monotonic() < deadline:
        if ready_file.exists():
            print(readiness_block(config))
            print(f"pipeline running in the background (pid {process.pid}); console log {log_path}")
            return 0
        if process.poll() is not None:
            print(f"pipeline failed to start (exit {process.returncode}); last lines of {log_path}:")
            print(log_tail(log_path, 30))
            return 1
        time.sleep(0.5)
    process.terminate()
    print(f"pipeline not ready in time; see {log_path}", file=sys.stderr)
    return 1


def stop(config: Config) -> int:
    pid = _running_pid(config)
    if pid is None:
        print("pipeline is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + config.stop_timeout * len(ROLE_ORDER) + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            print(f"pipeline stopped (pid {pid})")
            return 0
        time.sleep(0.3)
    print(f"pipeline (pid {pid}) did not stop in time", file=sys.stderr)
    return 1


def status(config: Config) -> int:
    pid = _running_pid(config)
    if pid is None:
        print("pipeline is not running")
        return 3
    ready = (config.run_dir / "pipeline.ready").exists()
    print(f"pipeline running (pid {pid}), {'ready' if ready else 'starting'}; logs in {config.log_dir}")
    return 0 if ready else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.pipeline", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="start every role and supervise them")
    run_parser.add_argument(
        "--without", action="append", default=[], metavar="ROLE", help="leave a role out (repeatable)"
    )
    run_parser.add_argument("--detach", action="store_true", help="run in the background; return when ready")
    sub.add_parser("stop", help="stop a pipeline started with --detach")
    sub.add_parser("status", help="is a detached pipeline running and ready?")
    args = parser.parse_args(argv)
    try:
        config = Config.from_env(os.environ, getattr(args, "without", []))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "stop":
        return stop(config)
    if args.command == "status":
        return status(config)
    if args.detach:
        return detach(config, [arg for w in args.without for arg in ("--without", w)])
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
