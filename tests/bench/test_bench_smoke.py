"""`make bench-smoke`: every benchmark stage runs at tiny sizes on the real local services and
writes a report in which every section is present and every figure is a number. The targets are
not asserted here (CI machines vary); the harness and the report's shape are."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import services

REPO_DIR = Path(__file__).resolve().parents[2]

FIGURES = [
    "service_layer.orders_per_s",
    "seed_relay.throughput_events_per_s",
    "seed_relay.publish_latency.p95_ms",
    "relay.one_worker.events_per_s",
    "relay.two_workers.events_per_s",
    "consumers.transformer.events_per_s",
    "consumers.sink.rows_per_s",
    "pipeline.api.orders_per_s",
    "pipeline.e2e_kick.commit_to_view.p50_ms",
    "pipeline.e2e_kick.commit_to_view.p95_ms",
    "pipeline.e2e_kick.commit_to_view.p99_ms",
    "pipeline.e2e_kick.commit_to_kafka_ack.p95_ms",
    "e2e_beat.commit_to_view.p95_ms",
    "pipeline.sustained.max_lag.transformer",
    "pipeline.sustained.max_lag.sink",
    "pipeline.lag_at_target.achieved_orders_per_s",
    "pipeline.lag_at_target.max_lag.transformer",
    "pipeline.lag_at_target.max_lag.sink",
    "ratios.relay_one_worker_throughput_x_seed",
    "ratios.seed_publish_p95_over_ours_kick",
    "debezium.snapshot.events_per_s",
    "debezium.snapshot.cpu_s_per_1000_events",
    "debezium.debezium.streaming.events_per_s",
    "debezium.debezium.streaming.cpu_s_per_1000_events",
    "debezium.debezium.latency.p95_ms",
    "debezium.debezium.peak_rss_mb",
    "debezium.ours_kick.streaming.events_per_s",
    "debezium.ours_kick.latency.p95_ms",
    "debezium.ours_beat.latency.p95_ms",
]
MEMORY_ROLES = ["web", "celery-worker", "celery-beat", "transformer", "sink", "chdb-gateway"]


def figure(report: dict, path: str) -> object:
    value: object = report
    for part in path.split("."):
        assert isinstance(value, dict) and part in value, f"report has no {path}"
        value = value[part]
    return value


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.timeout(800)
def test_bench_smoke_writes_a_complete_report(tmp_path: Path, kafka_brokers: int) -> None:
    services.require_mariadb()
    services.require_redis()
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "TEST_RUN_ID")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=740, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = list(tmp_path.iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    assert (run_dir / "report.md").read_text().startswith("# Benchmark report")
    assert report["errors"] == {}

    for path in FIGURES:
        assert is_number(figure(report, path)), f"{path} = {figure(report, path)!r}"
    for path in FIGURES[:8]:
        assert figure(report, path) > 0, f"{path} measured nothing"
    for size in report["sizes"]["view_sizes"]:
        for view, result in report["views"][str(size)]["views"].items():
            assert is_number(result["p95_ms"]), f"{view} at {size} orders"
        measured = report["views"][str(size)]["views"].items()
        panels = {v for v, r in measured if is_number(r.get("panel_p95_ms"))}
        assert panels == {f"{v}_{design}" for v in ("user_analytics", "top_products")
                          for design in ("mv", "refreshable")}, f"panel queries at {size} orders"  # fmt: skip
    for size in report["sizes"]["fsync_batch_sizes"]:
        inserts = report["fsync"]["batch_sizes"][str(size)]
        for mode in ("fsync", "no_fsync"):
            assert is_number(inserts[f"{mode}_ms_per_insert"]), f"{mode} inserts of {size} rows"
            assert inserts[f"{mode}_ms_per_insert"] > 0, f"{mode} inserts of {size} rows"
    markdown = (run_dir / "report.md").read_text()
    assert "## ClickHouse inserts, fsync on vs off" in markdown
    assert "## Relays side by side: ours, Debezium's outbox router, the seed's" in markdown
    peaks = report["memory"]["pipeline_rest"]
    for role in MEMORY_ROLES:
        assert is_number(peaks[role]["max_process_mb"]) and peaks[role]["max_process_mb"] > 0, role
    for role in MEMORY_ROLES:
        assert role in report["memory"]["pipeline_sustained"], role
    assert report["relay"]["one_worker"]["memory"]["peak"]["relay"]["max_process_mb"] > 0
    assert {row["what"] for row in report["targets"]} and all(
        isinstance(row["met"], bool) for row in report["targets"]
    )
