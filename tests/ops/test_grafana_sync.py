"""scripts/grafana_sync.py: the payloads it would send and its refusals (no Grafana server runs
on our machines, so the HTTP calls themselves are not exercised here)."""

from __future__ import annotations

import json

import pytest

from scripts import grafana_sync

DATASOURCE_ENV = {
    "CLICKHOUSE_HOST": "ch.example",
    "CLICKHOUSE_PORT": "8123",
    "CLICKHOUSE_USER": "admin",
    "CLICKHOUSE_PASSWORD": "pw$1",
    "MYSQL_HOST": "db.example:3306",
    "MYSQL_DATABASE": "ecommerce",
    "MYSQL_USER": "admin",
    "MYSQL_PASSWORD": "secret",
    "PROMETHEUS_URL": "http://prom.example:9090",
}


def test_expand_env_follows_grafanas_syntax_and_refuses_unset_variables() -> None:
    assert grafana_sync.expand_env("$A-${B}-$$C", {"A": "1", "B": "2"}) == "1-2-$C"
    with pytest.raises(grafana_sync.ConfigError, match="B, C"):
        grafana_sync.expand_env("${C} $B", {})


def test_datasource_payloads_come_from_the_provisioning_file() -> None:
    datasources = {d["uid"]: d for d in grafana_sync.load_datasources(DATASOURCE_ENV)}
    assert set(datasources) == {"clickhouse", "mysql", "prometheus"}
    clickhouse = datasources["clickhouse"]
    assert clickhouse["type"] == "grafana-clickhouse-datasource"
    assert clickhouse["jsonData"]["host"] == "ch.example"
    assert clickhouse["jsonData"]["port"] == 8123
    assert clickhouse["secureJsonData"]["password"] == "pw$1"
    assert datasources["mysql"]["url"] == "db.example:3306"
    assert datasources["prometheus"]["url"] == "http://prom.example:9090"


def test_dashboard_payload_overwrites_by_uid_in_the_projects_folder() -> None:
    dashboards = grafana_sync.load_dashboards()
    assert {d["uid"] for d in dashboards} == {"outbox-sales", "outbox-pipeline-health"}
    payload = grafana_sync.dashboard_save_payload({"id": 7, "uid": "x", "title": "X"}, "folder")
    assert payload["dashboard"] == {"uid": "x", "title": "X"}
    assert payload["overwrite"] is True and payload["folderUid"] == "folder"


def test_grafana_target_needs_a_url_and_credentials() -> None:
    with pytest.raises(grafana_sync.ConfigError, match="GRAFANA_URL"):
        grafana_sync.grafana_target({})
    with pytest.raises(grafana_sync.ConfigError, match="GRAFANA_TOKEN"):
        grafana_sync.grafana_target({"GRAFANA_URL": "http://g:3000"})
    assert (
        grafana_sync.grafana_target({"GRAFANA_URL": "http://g:3000", "GRAFANA_TOKEN": "t"}).credential == "t"
    )
    basic = grafana_sync.grafana_target(
        {"GRAFANA_URL": "http://g:3000", "GRAFANA_USER": "a", "GRAFANA_PASSWORD": "b"}
    )
    assert basic.credential == ("a", "b")


def test_main_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert grafana_sync.main(["--dry-run"], env=DATASOURCE_ENV) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed["datasources"]) == 3 and len(printed["dashboards"]) == 2
    assert grafana_sync.main([], env={}) == 2
    assert "set these environment variables" in capsys.readouterr().err
    unreachable = {**DATASOURCE_ENV, "GRAFANA_URL": "http://127.0.0.1:9", "GRAFANA_TOKEN": "t"}
    assert grafana_sync.main([], env=unreachable) == 1
    assert "refused or is unreachable" in capsys.readouterr().err
