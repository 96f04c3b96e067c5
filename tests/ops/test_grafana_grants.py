"""Grafana's MySQL account against real MariaDB: grafana/sql/mysql-grafana-user.sql, run the way
the compose stack runs it (as root, after the Django migrations), lets the account run every MySQL
panel of the dashboards and nothing more: no sessions, no users, no event payloads, no writes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import MySQLdb
import pytest
from django.db import connection
from django.utils import timezone

from outbox.models import OutboxEvent, OutboxStatus
from tests.ops.compose_stack import REPO_DIR
from tests.ops.grafana_queries import panel_queries, render_mysql

GRANTS_SQL = REPO_DIR / "grafana" / "sql" / "mysql-grafana-user.sql"


@dataclass(frozen=True)
class Account:
    user: str
    password: str
    database: str


def sql_statements(text: str) -> list[str]:
    """The file's statements, as the mysql client's SOURCE would run them (comments dropped)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in re.split(r";\s*\n", body) if statement.strip()]


def root_connection(database: str) -> Any:
    """Root through the server's own unix socket (socket authentication, as the local services
    create their accounts), since the app's account may not grant."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@socket")
        (socket,) = cursor.fetchone()
    return MySQLdb.connect(unix_socket=socket, user="root", database=database, autocommit=True)


def account_connection(account: Account) -> Any:
    settings = connection.settings_dict
    return MySQLdb.connect(
        host=settings["HOST"],
        port=int(settings["PORT"]),
        user=account.user,
        password=account.password,
        database=account.database,
        autocommit=True,
    )


@pytest.fixture
def grafana_account(transactional_db: None) -> Iterator[Account]:
    account = Account(
        user=f"grafana_{uuid.uuid4().hex[:10]}",
        password=uuid.uuid4().hex,
        database=str(connection.settings_dict["NAME"]),
    )
    root = root_connection(account.database)
    try:
        cursor = root.cursor()
        cursor.execute(
            "SET @grafana_user = %s, @grafana_password = %s, @grafana_database = %s",
            (account.user, account.password, account.database),
        )
        for statement in sql_statements(GRANTS_SQL.read_text()):
            cursor.execute(statement)
        yield account
    finally:
        root.cursor().execute("DROP USER IF EXISTS %s@'%%'", (account.user,))
        root.close()


def seed_outbox() -> None:
    now = timezone.now()
    OutboxEvent.objects.bulk_create(
        OutboxEvent(
            event_type="OrderCreated",
            aggregate_type="order",
            aggregate_id=str(index),
            aggregate_version=1,
            occurred_at=now,
            payload={"order_id": index, "user_email": "someone@example.com"},
            status=status,
            published_at=now - timedelta(minutes=1) if status == OutboxStatus.PUBLISHED else None,
        )
        for index, status in enumerate([OutboxStatus.PENDING, OutboxStatus.FAILED, OutboxStatus.PUBLISHED])
    )


def test_the_account_runs_every_mysql_panel(grafana_account: Account) -> None:
    seed_outbox()
    queries = [q for q in panel_queries() if q.datasource_type == "mysql"]
    assert queries
    now = timezone.now()
    grafana = account_connection(grafana_account)
    try:
        cursor = grafana.cursor()
        for query in queries:
            cursor.execute(render_mysql(query.text, time_from=now - timedelta(days=1), time_to=now))
            assert cursor.fetchall(), query.key
    finally:
        grafana.close()


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT session_key, session_data FROM django_session",
        "SELECT COUNT(*) FROM django_session",
        "SELECT username, password FROM auth_user",
        "SELECT payload FROM outbox",
        "SELECT * FROM outbox",
        "SELECT id FROM orders",
        "UPDATE outbox SET status = 'pending'",
        "DELETE FROM outbox",
    ],
)
def test_the_account_reads_nothing_else(grafana_account: Account, statement: str) -> None:
    grafana = account_connection(grafana_account)
    try:
        with pytest.raises(MySQLdb.OperationalError, match=r"command denied"):
            grafana.cursor().execute(statement)
    finally:
        grafana.close()
