"""Accounts the compose stack creates with an SQL file run as root (grafana/sql/, kafka-connect/),
created the same way on the tests' MariaDB, and connections as root and as such an account."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import MySQLdb
from django.db import connection


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


@contextmanager
def account_created_by(sql_file: Path, prefix: str) -> Iterator[Account]:
    """A fresh account created by `sql_file`, run as root with @<prefix>_user, @<prefix>_password
    and @<prefix>_database set to it and the tests' database; dropped afterwards."""
    account = Account(
        user=f"{prefix}_{uuid.uuid4().hex[:10]}",
        password=uuid.uuid4().hex,
        database=str(connection.settings_dict["NAME"]),
    )
    root = root_connection(account.database)
    try:
        cursor = root.cursor()
        cursor.execute(
            f"SET @{prefix}_user = %s, @{prefix}_password = %s, @{prefix}_database = %s",
            (account.user, account.password, account.database),
        )
        for statement in sql_statements(sql_file.read_text()):
            cursor.execute(statement)
        yield account
    finally:
        root.cursor().execute("DROP USER IF EXISTS %s@'%%'", (account.user,))
        root.close()
