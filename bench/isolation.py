"""A private corner of the shared local services for one benchmark (or `make chaos`) run: its
own MariaDB database (created, migrated and dropped here), Kafka topics and consumer groups, Celery
queue, chDB directory and free ports. Nothing the default `make run` pipeline uses is touched."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environment
from environment.local_secret import ensure_local_secret_key, secret_key_file
from warehouse.gateway_credential import local_gateway_url

REPO_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Isolation:
    run_id: str
    database_url: str
    database_name: str
    var_dir: Path
    web_port: int
    clickhouse_port: int
    order_events_topic: str
    analytics_topic: str
    seed_topic: str
    kind: str = "bench"

    @classmethod
    def create(cls, kind: str = "bench") -> Isolation:
        """`kind` names the run's database, topics and scratch directory (bench, chaos)."""
        run_id = uuid.uuid4().hex[:8]
        # The app's database account may only create test_ecommerce* databases.
        name = f"test_ecommerce_{kind}_{run_id}"
        base = urlsplit(environment.env_str("DATABASE_URL", environment.DATABASE_URL))
        var_dir = Path(tempfile.mkdtemp(prefix=f"{kind}-{run_id}-"))
        # Every process of the run reads the run's own local-stack Django key from there.
        ensure_local_secret_key(secret_key_file(var_dir))
        return cls(
            run_id=run_id,
            database_url=urlunsplit(base._replace(path=f"/{name}")),
            database_name=name,
            var_dir=var_dir,
            web_port=free_port(),
            clickhouse_port=free_port(),
            order_events_topic=f"{kind}-{run_id}.order.events",
            analytics_topic=f"{kind}-{run_id}.orders_analytics",
            seed_topic=f"{kind}-{run_id}.seed-relay",
            kind=kind,
        )

    @property
    def clickhouse_url(self) -> str:
        """The run's chDB gateway with its credential (created in the run's VAR_DIR)."""
        return local_gateway_url(self.clickhouse_port, self.var_dir)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of every process of the run (the harness itself included)."""
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "backend.settings.base",
                "DATABASE_URL": self.database_url,
                "KAFKA_BOOTSTRAP_SERVERS": environment.env_str(
                    "KAFKA_BOOTSTRAP_SERVERS", environment.KAFKA_BOOTSTRAP_SERVERS, env
                ),
                "ORDER_EVENTS_TOPIC": self.order_events_topic,
                "ANALYTICS_TOPIC": self.analytics_topic,
                "TRANSFORMER_GROUP_ID": f"{self.kind}-{self.run_id}-transformer",
                "SINK_GROUP_ID": f"{self.kind}-{self.run_id}-sink",
                "CELERY_TASK_DEFAULT_QUEUE": f"{self.kind}-{self.run_id}",
                "CLICKHOUSE_URL": self.clickhouse_url,
                "CLICKHOUSE_DATABASE": "analytics",
                "CLICKHOUSE_HTTP_PORT": str(self.clickhouse_port),
                "WEB_PORT": str(self.web_port),
                "VAR_DIR": str(self.var_dir),
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "WARNING",
                # The harness writes through the service layer without a Celery worker listening.
                "OUTBOX_KICK_ON_COMMIT": "0",
            }
        )
        env.update(overrides)
        return env

    def _mysql(self, statement: str) -> None:
        import MySQLdb

        url = urlsplit(self.database_url)
        connection = MySQLdb.connect(
            host=url.hostname or "127.0.0.1",
            port=url.port or 3306,
            user=url.username or "",
            password=url.password or "",
        )
        try:
            connection.cursor().execute(statement)
        finally:
            connection.close()

    def prepare(self) -> None:
        """Creates and migrates the database and provisions the run's topics."""
        self._mysql(
            f"CREATE DATABASE `{self.database_name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
        for command in (["migrate", "--noinput", "-v", "0"], ["kafka_topics"]):
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=REPO_DIR,
                env=self.env(),
                check=True,
                capture_output=True,
                timeout=300,
            )

    def cleanup(self) -> None:
        """Best effort: the database, the topics, the consumer groups and the scratch directory."""
        try:
            self._mysql(f"DROP DATABASE IF EXISTS `{self.database_name}`")
        except Exception as exc:  # a cleanup failure must not hide the report
            print(f"{self.kind}: could not drop {self.database_name}: {exc}", file=sys.stderr)
        try:
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(
                bootstrap_servers=self.env()["KAFKA_BOOTSTRAP_SERVERS"].split(","), request_timeout_ms=30_000
            )
            existing = set(admin.list_topics())
            prefix = f"{self.kind}-{self.run_id}."
            topics = [t for t in existing if t.startswith(prefix)]
            if topics:
                admin.delete_topics(topics, timeout_ms=30_000)
            # The run's consumer groups are left to Kafka's offsets.retention: kafka-python's admin
            # client has no listing that works across its versions, and the names never repeat.
            admin.close()
        except Exception as exc:
            print(f"{self.kind}: could not delete the run's topics: {exc}", file=sys.stderr)
        shutil.rmtree(self.var_dir, ignore_errors=True)
