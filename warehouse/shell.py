"""An SQL shell on the analytics database over ClickHouse's HTTP interface, for `make
clickhouse-shell` on the local stack: there ClickHouse is chDB, owned by the chDB gateway process
(python -m warehouse chdb-gateway), which speaks that interface on 127.0.0.1:8123.

    python -m warehouse shell                 interactive; statements end with ';'
    python -m warehouse shell -q "SELECT 1"   one query
    echo "SHOW TABLES;" | python -m warehouse shell

CLICKHOUSE_URL chooses the server when it is http(s)://…; otherwise (chdb://…, the in-process
default) the shell asks the gateway at http://127.0.0.1:$CLICKHOUSE_HTTP_PORT (8123) with the
gateway's credential from $VAR_DIR (`warehouse.gateway_credential`). CLICKHOUSE_DATABASE (default
analytics) is the current database. Exit status: 0, or 1 when a query fails or ClickHouse is
unreachable (interactive mode reports query errors and goes on).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

import environment
from warehouse.client import redacted
from warehouse.gateway_credential import CredentialError, local_gateway_url

OUTPUT_FORMAT = "PrettyCompactMonoBlock"


class ShellError(Exception):
    """ClickHouse could not be reached, in words for the operator."""


def server_url(env: Mapping[str, str]) -> str:
    url = env.get("CLICKHOUSE_URL", "").strip()
    if url.startswith(("http://", "https://")):
        return url
    try:
        port = environment.env_int("CLICKHOUSE_HTTP_PORT", 8123, env, minimum=1)
        return local_gateway_url(port, environment.var_dir(env))
    except (environment.SettingsError, CredentialError, OSError) as exc:
        raise ShellError(f"cannot use the chDB gateway's credential: {exc}") from exc


def statements(text: str) -> Iterator[str]:
    """Splits on ';' outside quoted strings and identifiers; empty statements are dropped."""
    current: list[str] = []
    quote = ""
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif char == ";":
            statement = "".join(current).strip()
            if statement:
                yield statement
            current = []
        else:
            current.append(char)
    tail = "".join(current).strip()
    if tail:
        yield tail


def connect(url: str, database: str) -> Any:
    import clickhouse_connect

    try:
        return clickhouse_connect.get_client(dsn=url, database=database, connect_timeout=5)
    except Exception as exc:
        raise ShellError(
            f"ClickHouse is not reachable at {redacted(url)} ({exc}); on the local stack "
            "the chDB gateway serves it while the pipeline runs"
        ) from exc


# Statements that return rows get a table; the rest (CREATE, INSERT … VALUES, …) run as commands,
# since a FORMAT clause appended to them would be read as part of their data.
_ROW_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESC", "DESCRIBE", "EXPLAIN", "EXISTS", "CHECK")


def execute(client: Any, sql: str) -> str:
    if sql.lstrip("( \t\n").split(None, 1)[0].upper() in _ROW_STATEMENTS:
        output: bytes = client.raw_query(sql, fmt=OUTPUT_FORMAT)
        return output.decode(errors="replace")
    client.command(sql)
    return "Ok.\n"


def interactive(client: Any, stdin: TextIO, stdout: TextIO) -> int:
    buffer = ""
    while True:
        stdout.write("clickhouse> " if not buffer else "         -> ")
        stdout.flush()
        line = stdin.readline()
        if not line:
            stdout.write("\n")
            return 0
        buffer += line
        if not buffer.rstrip().endswith(";"):
            continue
        for sql in statements(buffer):
            try:
                stdout.write(execute(client, sql))
            except Exception as exc:  # report and keep the session
                stdout.write(f"error: {exc}\n")
        buffer = ""


def batch(client: Any, text: str, stdout: TextIO) -> int:
    for sql in statements(text):
        try:
            stdout.write(execute(client, sql))
        except Exception as exc:
            print(f"clickhouse_shell: {exc}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warehouse shell", description="SQL shell on the analytics database (ClickHouse HTTP)."
    )
    parser.add_argument("-q", "--query", help="run these statements and exit")
    args = parser.parse_args(argv)
    # The driver logs each failed request too; the shell reports it once, in its own words.
    logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)
    database = os.environ.get("CLICKHOUSE_DATABASE", "").strip() or "analytics"
    try:
        url = server_url(os.environ)
        client = connect(url, database)
    except ShellError as exc:
        print(f"clickhouse_shell: {exc}", file=sys.stderr)
        return 1
    if args.query is not None:
        return batch(client, args.query, sys.stdout)
    if sys.stdin.isatty():
        shown = redacted(url)
        print(f"connected to {shown}, database {database}; end statements with ';', Ctrl-D quits")
        return interactive(client, sys.stdin, sys.stdout)
    return batch(client, sys.stdin.read(), sys.stdout)
