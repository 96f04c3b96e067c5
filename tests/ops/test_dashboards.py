"""The dashboard JSON is a valid Grafana dashboard model whose panels all resolve: unique uids and
panel ids, a layout inside Grafana's 24-column grid, datasource references that name provisioned
datasources (by uid and type), and one query per panel that Grafana can run."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.ops.grafana_queries import REPO_DIR, load_dashboards, panel_queries

DASHBOARDS = load_dashboards()
DATASOURCES_FILE = REPO_DIR / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
# kafka-exporter's metric names, the only Prometheus series the dashboards read.
KAFKA_EXPORTER_METRICS = {
    "kafka_consumergroup_lag",
    "kafka_topic_partition_current_offset",
    "kafka_topic_partition_oldest_offset",
}


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of the provisioned datasources."""
    document = yaml.safe_load(DATASOURCES_FILE.read_text())
    return {entry["uid"]: entry["type"] for entry in document["datasources"]}


def dropped_keys(original: Any, decoded: Any, path: str = "") -> list[str]:
    if isinstance(original, dict):
        missing = [f"{path}/{key}" for key in original if key not in decoded]
        return missing + [
            m
            for key in original
            if key in decoded
            for m in dropped_keys(original[key], decoded[key], f"{path}/{key}")
        ]
    if isinstance(original, list):
        return [
            m
            for i, (a, b) in enumerate(zip(original, decoded, strict=True))
            for m in dropped_keys(a, b, f"{path}[{i}]")
        ]
    return []


def test_there_are_a_sales_and_a_pipeline_health_dashboard() -> None:
    assert {d["uid"] for d in DASHBOARDS.values()} == {"outbox-sales", "outbox-pipeline-health"}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_survives_grafanas_own_dashboard_model(name: str) -> None:
    """Decoding through grafana-foundation-sdk's Dashboard model drops any key Grafana does not
    know (a misspelt `gridpos` or `refersh` would be silently ignored by Grafana)."""
    original = DASHBOARDS[name]
    decoded = json.loads(json.dumps(Dashboard.from_json(original), cls=JSONEncoder))
    assert dropped_keys(original, decoded) == []
    for key in ("uid", "title", "schemaVersion", "panels", "time", "templating"):
        assert key in original, f"{name}: no {key}"


def test_uids_and_panel_ids_are_unique() -> None:
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(uids) == len(set(uids))
    for name, dashboard in DASHBOARDS.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        titles = [p["title"] for p in dashboard["panels"]]
        assert len(titles) == len(set(titles)), f"{name}: duplicate panel titles"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in DASHBOARDS[name]["panels"]:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel[
            "title"
        ]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{name}: {panel['title']} overlaps another panel"
        taken |= cells


def test_every_datasource_reference_resolves_to_a_provisioned_datasource() -> None:
    provisioned = provisioned_datasources()
    assert provisioned["clickhouse"] == "grafana-clickhouse-datasource"
    for name, dashboard in DASHBOARDS.items():
        for panel in dashboard["panels"]:
            refs = [panel["datasource"], *(t["datasource"] for t in panel["targets"] if "datasource" in t)]
            for ref in refs:
                assert provisioned.get(ref["uid"]) == ref["type"], f"{name}/{panel['title']}: {ref}"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert ref_ids and len(ref_ids) == len(set(ref_ids)), f"{name}/{panel['title']}: refIds"


def test_every_panel_has_a_query() -> None:
    for query in panel_queries():
        assert query.text.strip(), f"{query.key}: empty query"


def test_variables_the_queries_use_are_defined() -> None:
    for dashboard in DASHBOARDS.values():
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                text = target.get("rawSql") or target.get("expr") or ""
                used = set(re.findall(r"\$\{(\w+)\}", text)) - {"__from", "__to"}
                assert used <= defined, f"{dashboard['uid']}/{panel['title']}: undefined {used - defined}"
        database = next(v for v in dashboard["templating"]["list"] if v["name"] == "database")
        assert database["query"] == "analytics", "the database variable must default to CLICKHOUSE_DATABASE"


def prometheus_series(prefix: str) -> set[str]:
    return {
        name
        for query in panel_queries()
        if query.datasource_type == "prometheus"
        for name in re.findall(r"\b(" + prefix + r"[a-z_]+)\b", query.text)
    }


def test_prometheus_panels_read_kafka_exporter_and_outbox_series() -> None:
    prometheus = [q for q in panel_queries() if q.datasource_type == "prometheus"]
    assert {q.panel_title for q in prometheus} >= {"Consumer lag per group", "Dead-letter messages"}
    for query in prometheus:
        assert re.search(r"\b(kafka|outbox)_", query.text), f"{query.key}: reads no known series"
        assert query.text.count("(") == query.text.count(")"), f"{query.key}: unbalanced parentheses"
    assert prometheus_series("kafka_") <= KAFKA_EXPORTER_METRICS


@pytest.mark.django_db
def test_outbox_series_the_panels_read_are_served_at_metrics(client: Any) -> None:
    """The relay panels read the web role's /metrics: every outbox series they name must be in it."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200
    served = {
        sample.name
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }
    used = prometheus_series("outbox_")
    assert used, "the pipeline-health dashboard reads no outbox series"
    assert used <= served, f"not served at /metrics: {sorted(used - served)}"
