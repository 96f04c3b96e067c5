"""Grafana's MySQL account against real MariaDB: grafana/sql/mysql-grafana-user.sql, run the way
the compose stack runs it (as root, after the Django migrations), lets the account run every MySQL
panel of the dashboards and nothing more: no sessions, no users, no event payloads, no writes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import MySQLdb
import pytest
from django.utils import timezone

from outbox.models import OutboxEvent, OutboxStatus
from tests.ops.compose_stack import REPO_DIR
from tests.ops.grafana_queries import panel_queries, render_mysql
from tests.ops.mysql_accounts import Account, account_connection, account_created_by

GRANTS_SQL = REPO_DIR / "grafana" / "sql" / "mysql-grafana-user.sql"


@pytest.fixture
def grafana_account(transactional_db: None) -> Iterator[Account]:
    with account_created_by(GRANTS_SQL, "grafana") as account:
        yield account


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
