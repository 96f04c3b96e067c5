"""Medians over several benchmark runs: one table of every headline figure, its median and the
value of each run, so a figure quoted from a noisy machine is never one lucky (or unlucky) run.

    python -m bench.medians RUN_DIR RUN_DIR [...]   # each holds a report.json

`python -m bench --repeat N` runs the benchmark N times and writes this table next to the runs.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.report import _fmt, _get

# (label, path in report.json); figures missing from a run (a skipped stage) are left out.
FIGURES: list[tuple[str, str]] = [
    ("service layer orders/s (1 thread)", "service_layer.orders_per_s"),
    ("HTTP API orders/s", "pipeline.api.orders_per_s"),
    ("HTTP POST /api/orders p95 ms", "pipeline.api.request.p95_ms"),
    ("seed relay events/s", "seed_relay.throughput_events_per_s"),
    ("relay events/s, 1 worker", "relay.one_worker.events_per_s"),
    ("relay events/s, 2 workers", "relay.two_workers.events_per_s"),
    ("transformer events/s", "consumers.transformer.events_per_s"),
    ("sink rows/s", "consumers.sink.rows_per_s"),
    ("e2e p50 ms, kick", "pipeline.e2e_kick.commit_to_view.p50_ms"),
    ("e2e p95 ms, kick", "pipeline.e2e_kick.commit_to_view.p95_ms"),
    ("e2e p99 ms, kick", "pipeline.e2e_kick.commit_to_view.p99_ms"),
    ("commit → Kafka ack p95 ms, kick", "pipeline.e2e_kick.commit_to_kafka_ack.p95_ms"),
    ("e2e p50 ms, beat alone", "e2e_beat.commit_to_view.p50_ms"),
    ("e2e p95 ms, beat alone", "e2e_beat.commit_to_view.p95_ms"),
    ("e2e p99 ms, beat alone", "e2e_beat.commit_to_view.p99_ms"),
    ("sustained orders/s achieved", "pipeline.sustained.achieved_orders_per_s"),
    ("max lag, transformer", "pipeline.sustained.max_lag.transformer"),
    ("max lag, sink", "pipeline.sustained.max_lag.sink"),
    ("lag phase orders/s achieved (service layer)", "pipeline.lag_at_target.achieved_orders_per_s"),
    ("lag phase max lag, transformer", "pipeline.lag_at_target.max_lag.transformer"),
    ("lag phase max lag, sink", "pipeline.lag_at_target.max_lag.sink"),
    ("lag phase max outbox pending", "pipeline.lag_at_target.max_outbox_pending"),
    ("relay peak RSS MB (backlog)", "relay.one_worker.memory.peak.relay.max_process_mb"),
    ("transformer peak RSS MB (backlog)", "consumers.transformer.memory.peak.transformer.max_process_mb"),
    ("sink peak RSS MB (backlog)", "consumers.sink.memory.peak.sink.max_process_mb"),
    ("relay throughput x seed", "ratios.relay_one_worker_throughput_x_seed"),
    ("Debezium snapshot events/s", "debezium.snapshot.events_per_s"),
    ("streaming events/s, ours (kick)", "debezium.ours_kick.streaming.events_per_s"),
    ("streaming events/s, Debezium", "debezium.debezium.streaming.events_per_s"),
    ("commit → Kafka p95 ms, ours (kick)", "debezium.ours_kick.latency.p95_ms"),
    ("commit → Kafka p95 ms, ours (beat alone)", "debezium.ours_beat.latency.p95_ms"),
    ("commit → Kafka p95 ms, Debezium", "debezium.debezium.latency.p95_ms"),
    ("CPU s per 1,000 events streaming, ours (kick)", "debezium.ours_kick.streaming.cpu_s_per_1000_events"),
    ("CPU s per 1,000 events streaming, Debezium", "debezium.debezium.streaming.cpu_s_per_1000_events"),
    ("peak RSS MB streaming, ours (kick)", "debezium.ours_kick.peak_rss_mb"),
    ("peak RSS MB streaming, Debezium", "debezium.debezium.peak_rss_mb"),
    ("seed p95 / ours (kick)", "ratios.seed_publish_p95_over_ours_kick"),
]


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _view_figures(report: dict[str, Any]) -> list[tuple[str, float]]:
    figures = []
    for size, result in sorted(report.get("views", {}).items(), key=lambda kv: int(kv[0])):
        for name, view in result["views"].items():
            value = _number(view.get("p95_ms"))
            if value is not None:
                figures.append((f"{name} p95 ms at {int(size):,} orders", value))
            panel = _number(view.get("panel_p95_ms"))
            if panel is not None:
                figures.append((f"{name} panel's top 10 p95 ms at {int(size):,} orders", panel))
    return figures


def _fsync_figures(report: dict[str, Any]) -> list[tuple[str, float]]:
    figures = []
    for size, result in report.get("fsync", {}).get("batch_sizes", {}).items():
        for mode in ("fsync", "no_fsync"):
            value = _number(result.get(f"{mode}_ms_per_insert"))
            if value is not None:
                figures.append((f"sink insert ms, {int(size):,} rows, {mode.replace('_', ' ')}", value))
    return figures


def medians(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per figure found in at least one run: its median and each run's value."""
    labels: list[str] = []
    values: dict[str, list[float | None]] = {}
    per_run = []
    for report in reports:
        found = {label: _number(_get(report, path)) for label, path in FIGURES}
        found.update(dict(_view_figures(report)))
        found.update(dict(_fsync_figures(report)))
        per_run.append(found)
        for label in found:
            if label not in values:
                labels.append(label)
                values[label] = []
    rows = []
    for label in labels:
        runs = [found.get(label) for found in per_run]
        measured = [v for v in runs if v is not None]
        if measured:
            rows.append({"what": label, "median": statistics.median(measured), "runs": runs})
    return rows


def markdown(rows: list[dict[str, Any]], commands: list[str]) -> str:
    lines = [f"# Medians of {len(commands)} benchmark runs", ""]
    lines += [f"{i + 1}. `{command}`" for i, command in enumerate(commands)]
    header = " | ".join(f"run {i + 1}" for i in range(len(commands)))
    lines += ["", f"| figure | median | {header} |", "|---|---|" + "---|" * len(commands)]
    for row in rows:
        runs = " | ".join(_fmt(v) if v is not None else "-" for v in row["runs"])
        lines.append(f"| {row['what']} | {_fmt(row['median'])} | {runs} |")
    return "\n".join(lines) + "\n"


def write(run_dirs: list[Path], out_dir: Path) -> Path:
    reports = [json.loads((run_dir / "report.json").read_text()) for run_dir in run_dirs]
    rows = medians(reports)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "medians.json").write_text(
        json.dumps({"runs": [str(d) for d in run_dirs], "figures": rows}, indent=2)
    )
    path = out_dir / "medians.md"
    path.write_text(markdown(rows, [r["command"] for r in reports]))
    return path


def main(argv: list[str]) -> int:
    run_dirs = [Path(arg) for arg in argv]
    missing = [str(d) for d in run_dirs if not (d / "report.json").is_file()]
    if not run_dirs or missing:
        print(
            "usage: python -m bench.medians RUN_DIR [RUN_DIR ...] (each with a report.json)"
            + (f"; no report.json in: {', '.join(missing)}" if missing else ""),
            file=sys.stderr,
        )
        return 2
    path = write(run_dirs, run_dirs[0].parent)
    print(path.read_text())
    print(f"bench: medians in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
