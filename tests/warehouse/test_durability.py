"""A host crash must not lose rows whose Kafka offsets the sink committed: the two tables the sink
writes sync every insert to disk before it returns, on a fresh database as on one created before
these settings, and keep the parts a merge replaced until the merged part is surely on disk.
CLICKHOUSE_FSYNC_AFTER_INSERT=0, for throwaway benchmarks, leaves every insert unsynced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consumers.sink import ClickHouseWriter
from tests.warehouse.fsync_probe import batch
from warehouse.schema import migrate, schema_statements

REPO_DIR = Path(__file__).resolve().parents[2]
SINK_TABLES = ("orders_analytics", "order_tombstones", "view_state")
# ClickHouse server's default, which its documentation gives as the time within which a new part
# is surely written to disk even under load (the kernel's writeback alone takes up to 30 s).
OLD_PARTS_LIFETIME = 480


def table_settings(client: Any, database: str, table: str) -> dict[str, str]:
    """The settings a table was given, as its CREATE statement lists them."""
    ((query,),) = client.query(
        f"SELECT create_table_query FROM system.tables WHERE database = '{database}' AND name = '{table}'"
    ).result_rows
    _, found, clause = query.rpartition(" SETTINGS ")
    return dict(item.split(" = ", 1) for item in clause.split(", ")) if found else {}


def effective_setting(client: Any, database: str, table: str, name: str) -> int:
    """The table's own value of a MergeTree setting, else the engine's default."""
    own = table_settings(client, database, table).get(name)
    if own is not None:
        return int(own)
    ((default,),) = client.query(
        f"SELECT value FROM system.merge_tree_settings WHERE name = '{name}'"
    ).result_rows
    return int(default)


def assert_durable(client: Any, database: str) -> None:
    for table in SINK_TABLES:
        settings = table_settings(client, database, table)
        assert (settings.get("fsync_after_insert"), settings.get("fsync_part_directory")) == ("1", "1"), table
        assert effective_setting(client, database, table, "old_parts_lifetime") >= OLD_PARTS_LIFETIME, table


def test_a_fresh_database_syncs_every_insert_into_the_sink_tables(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    migrate(clickhouse_client, clickhouse_database)
    assert_durable(clickhouse_client, clickhouse_database)


def test_migrating_a_database_created_without_the_settings_turns_them_on_once(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    # The schema as it stood before: the same CREATE statements, without the ALTERs that follow.
    for statement in schema_statements(clickhouse_database):
        if not statement.startswith("ALTER TABLE"):
            clickhouse_client.command(statement)
    for table in SINK_TABLES:
        assert "fsync_after_insert" not in table_settings(clickhouse_client, clickhouse_database, table)
    ClickHouseWriter(clickhouse_client, clickhouse_database).write(batch())

    migrate(clickhouse_client, clickhouse_database)
    assert_durable(clickhouse_client, clickhouse_database)
    upgraded = {t: table_settings(clickhouse_client, clickhouse_database, t) for t in SINK_TABLES}
    migrate(clickhouse_client, clickhouse_database)
    assert {t: table_settings(clickhouse_client, clickhouse_database, t) for t in SINK_TABLES} == upgraded
    counts = clickhouse_client.query(
        f"SELECT (SELECT count() FROM {clickhouse_database}.orders_analytics),"
        f" (SELECT count() FROM {clickhouse_database}.order_tombstones)"
    ).result_rows
    assert counts == [(2, 1)]  # the rows written before the upgrade are still there


def probe(data_dir: Path, **settings: str) -> dict[str, int]:
    """Migrates chDB in `data_dir` as `python -m consumers migrate` does with these settings, then
    counts the engine's syncs while the sink's writer stores a batch (tests/warehouse/fsync_probe.py)."""
    env = {k: v for k, v in os.environ.items() if k != "CLICKHOUSE_FSYNC_AFTER_INSERT"}
    env.update(CLICKHOUSE_URL=f"chdb://{data_dir}", CLICKHOUSE_DATABASE="analytics", **settings)
    done = subprocess.run(
        [sys.executable, "-m", "tests.warehouse.fsync_probe"],
        cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    counts: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts


@pytest.mark.slow
def test_the_sink_writes_sync_to_disk_by_default_and_not_once_the_setting_is_off(tmp_path: Path) -> None:
    """The engine's own counters, while the sink's writer stores a batch, say whether anything was
    synced. Turning the setting off takes effect on a database that was durable before."""
    durable = probe(tmp_path)
    assert durable["FileSync"] > 0 and durable["DirectorySync"] > 0, durable

    assert probe(tmp_path, CLICKHOUSE_FSYNC_AFTER_INSERT="0") == {"FileSync": 0, "DirectorySync": 0}
