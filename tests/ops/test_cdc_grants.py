"""Debezium's MySQL account against real MariaDB: kafka-connect/mysql-cdc-user.sql, run the way the
compose stack runs it (as root, after the Django migrations), lets the account stream the binary
log and read the outbox table, and nothing more: no other table, no writes."""

from __future__ import annotations

from collections.abc import Iterator

import MySQLdb
import pytest

from tests.ops.compose_stack import REPO_DIR
from tests.ops.mysql_accounts import Account, account_connection, account_created_by, root_connection

GRANTS_SQL = REPO_DIR / "kafka-connect" / "mysql-cdc-user.sql"


@pytest.fixture
def cdc_account(transactional_db: None) -> Iterator[Account]:
    with account_created_by(GRANTS_SQL, "cdc") as account:
        yield account


def test_the_account_reads_the_binary_log_position_and_the_outbox(cdc_account: Account) -> None:
    root = root_connection(cdc_account.database)
    try:
        cursor = root.cursor()
        cursor.execute("SHOW GRANTS FOR %s@'%%'", (cdc_account.user,))
        grants = " ".join(row[0] for row in cursor.fetchall())
    finally:
        root.close()
    assert "REPLICATION SLAVE" in grants and ("BINLOG MONITOR" in grants or "REPLICATION CLIENT" in grants)

    cdc = account_connection(cdc_account)
    try:
        cursor = cdc.cursor()
        cursor.execute("SHOW MASTER STATUS")  # what Debezium 2.x asks for the log position
        cursor.fetchall()
        cursor.execute("SELECT id, event_id, payload FROM outbox")
        cursor.fetchall()
    finally:
        cdc.close()


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT id FROM orders",
        "SELECT email FROM users",
        "SELECT session_key FROM django_session",
        "SELECT username, password FROM auth_user",
        "UPDATE outbox SET status = 'pending'",
        "DELETE FROM outbox",
        "INSERT INTO outbox (id) VALUES (1)",
    ],
)
def test_the_account_reads_nothing_else(cdc_account: Account, statement: str) -> None:
    cdc = account_connection(cdc_account)
    try:
        with pytest.raises(MySQLdb.OperationalError, match=r"command denied"):
            cdc.cursor().execute(statement)
    finally:
        cdc.close()
