"""The benchmark report: report.json (every figure), report.md (the readable tables and the
targets, met or not) and, when matplotlib is installed, latency.png (end-to-end latency)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Soak and backlog growth above this (MB of the largest process of a role) counts as growing.
GROWTH_LIMIT_MB = 20.0
RSS_LIMIT_MB = 250.0


def _get(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _ratio(numerator: Any, denominator: Any) -> float | None:
    try:
        if denominator and not math.isnan(denominator) and not math.isnan(numerator):
            return round(float(numerator) / float(denominator), 1)
    except TypeError:
        pass
    return None


def ratios(report: dict[str, Any]) -> dict[str, float | None]:
    seed_rate = _get(report, "seed_relay.throughput_events_per_s")
    seed_p50 = _get(report, "seed_relay.publish_latency.p50_ms")
    seed_p95 = _get(report, "seed_relay.publish_latency.p95_ms")
    return {
        "relay_one_worker_throughput_x_seed": _ratio(
            _get(report, "relay.one_worker.events_per_s"), seed_rate
        ),
        "relay_two_workers_throughput_x_seed": _ratio(
            _get(report, "relay.two_workers.events_per_s"), seed_rate
        ),
        "seed_publish_p50_over_ours_kick": _ratio(
            seed_p50, _get(report, "pipeline.e2e_kick.commit_to_kafka_ack.p50_ms")
        ),
        "seed_publish_p95_over_ours_kick": _ratio(
            seed_p95, _get(report, "pipeline.e2e_kick.commit_to_kafka_ack.p95_ms")
        ),
        "seed_publish_p50_over_ours_beat": _ratio(
            seed_p50, _get(report, "e2e_beat.commit_to_kafka_ack.p50_ms")
        ),
        "seed_publish_p95_over_ours_beat": _ratio(
            seed_p95, _get(report, "e2e_beat.commit_to_kafka_ack.p95_ms")
        ),
    }


def _largest_view_p95(report: dict[str, Any], suffix: str, *, panel: bool = False) -> tuple[int, float]:
    """The slowest view's p95 at the largest size: of every view read whole, or (`panel`) of the
    queries the dashboard's panels send (a top ten where a panel asks for one)."""
    views = report.get("views", {})
    if not views:
        return 0, float("nan")
    size = max(int(s) for s in views)
    p95s = [
        v.get("panel_p95_ms", v["p95_ms"]) if panel else v["p95_ms"]
        for name, v in views[str(size)]["views"].items()
        if name.endswith(suffix)
    ]
    return size, max(p95s)


def _view_upkeep_targets(report: dict[str, Any], add: Callable[[str, Any, str, bool], None]) -> None:
    """The incremental views' upkeep at the largest size, and how it grew from the smallest."""
    views = report.get("views", {})
    if not views:
        return
    sizes = sorted(int(s) for s in views)
    small, large = views[str(sizes[0])]["incremental"], views[str(sizes[-1])]["incremental"]
    rest = large["cpu_at_rest_cores"]
    add(f"views' upkeep at rest, cores, at {sizes[-1]:,} orders", rest, "< 0.05", rest < 0.05)
    growth = rest / small["cpu_at_rest_cores"] if small["cpu_at_rest_cores"] else float("nan")
    add(f"views' upkeep at rest, {sizes[-1]:,} / {sizes[0]:,} orders", growth, "<= 1.5", growth <= 1.5)
    rows = large["ingest"]["rows_per_s"]
    add(f"sink rows/s into the incremental views at {sizes[-1]:,} orders", rows, ">= 20000", rows >= 20000)
    shown = large["visible"]["p95_ms"]
    add(
        f"stored -> dashboard view p95 ms at {sizes[-1]:,} orders",
        shown,
        "<= 1000",
        shown is not None and shown <= 1000,
    )


def _peak(section: Any, role: str) -> float:
    peak = _get(section, f"memory.peak.{role}.max_process_mb") if isinstance(section, dict) else None
    return float(peak) if peak is not None else float("nan")


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """(what, measured, target, met). NaN (not measured) never counts as met."""
    rows: list[dict[str, Any]] = []

    def add(what: str, value: Any, target: str, met: bool) -> None:
        number = float(value) if value is not None else float("nan")
        rows.append(
            {"what": what, "measured": number, "target": target, "met": bool(met) and not math.isnan(number)}
        )

    api = _get(report, "pipeline.api.orders_per_s")
    add("orders/s through the HTTP API (gunicorn)", api, ">= 300", (api or 0) >= 300)
    relay = _get(report, "relay.one_worker.events_per_s")
    add("relay events/s, one worker", relay, ">= 5000", (relay or 0) >= 5000)
    relay2 = _get(report, "relay.two_workers.events_per_s")
    add("relay events/s, two workers", relay2, ">= 5000", (relay2 or 0) >= 5000)
    sink = _get(report, "consumers.sink.rows_per_s")
    add("sink rows/s into ClickHouse", sink, ">= 20000", (sink or 0) >= 20000)
    kick = _get(report, "pipeline.e2e_kick.commit_to_view.p95_ms")
    add("end-to-end p95 ms, on-commit kick", kick, "<= 1000", (kick or math.inf) <= 1000)
    beat = _get(report, "e2e_beat.commit_to_view.p95_ms")
    add("end-to-end p95 ms, beat alone", beat, "<= 6000", (beat or math.inf) <= 6000)
    size, mv = _largest_view_p95(report, "_mv", panel=True)
    add(f"view query p95 ms at {size:,} orders, the dashboard panels' queries of the _mv views", mv, "< 50",
        mv < 50)  # fmt: skip
    size, mv = _largest_view_p95(report, "_mv")
    add(f"view query p95 ms at {size:,} orders, every _mv view read whole", mv, "< 50", mv < 50)
    _view_upkeep_targets(report, add)
    lag_phases = (("HTTP soak", "pipeline.sustained"), ("service-layer writers", "pipeline.lag_at_target"))
    for label, path in lag_phases:
        lag = _get(report, f"{path}.max_lag")
        target_rate = _get(report, f"{path}.target_orders_per_s") or 0
        achieved = _get(report, f"{path}.achieved_orders_per_s") or 0
        worst = max(lag.values()) if isinstance(lag, dict) and lag else None
        # Lag at a lower rate than the target says nothing about the target: not met then.
        add(
            f"max consumer lag, {label}, at {_fmt(float(achieved))} of {_fmt(float(target_rate))} orders/s",
            worst,
            "< 1000 at the target rate",
            worst is not None and worst < 1000 and achieved >= 0.95 * target_rate,
        )
    for role, path in (("relay", "relay.one_worker"), ("transformer", "consumers.transformer")):
        section = _get(report, path)
        peak = _peak(section, role)
        add(
            f"{role} peak RSS MB while the backlog drains", peak, f"< {RSS_LIMIT_MB:.0f}", peak < RSS_LIMIT_MB
        )
        growth = _get(report, f"{path}.memory.growth_mb.{role}")
        add(
            f"{role} RSS growth MB while the backlog drains",
            growth,
            f"< {GROWTH_LIMIT_MB:.0f} (flat)",
            growth is not None and growth < GROWTH_LIMIT_MB,
        )
    soak = _get(report, "memory.soak_growth_mb") or {}
    worst_growth = max(soak.values()) if soak else None
    add(
        f"largest RSS growth MB of any role over the {_get(report, 'memory.soak_seconds')} s soak",
        worst_growth,
        f"< {GROWTH_LIMIT_MB:.0f}",
        worst_growth is not None and worst_growth < GROWTH_LIMIT_MB,
    )
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _memory_table(title: str, peaks: dict[str, Any]) -> list[str]:
    lines = [f"**{title}**", "", "| role | processes | largest process MB | total MB |", "|---|---|---|---|"]
    for role, p in sorted(peaks.items()):
        lines.append(f"| {role} | {p['processes']} | {_fmt(p['max_process_mb'])} | {_fmt(p['total_mb'])} |")
    return [*lines, ""]


def _targets_section(report: dict[str, Any]) -> list[str]:
    lines = ["## Targets", "", "| what | measured | target | met |", "|---|---|---|---|"]
    for row in report["targets"]:
        lines.append(
            f"| {row['what']} | {_fmt(row['measured'])} | {row['target']} | {'yes' if row['met'] else 'NO'} |"
        )
    return lines


def _throughput_section(report: dict[str, Any]) -> list[str]:
    lines = ["", "## Throughput", "", "| stage | figure |", "|---|---|"]
    for label, path, unit in [
        ("service layer (1 thread)", "service_layer.orders_per_s", "orders/s"),
        ("HTTP API (gunicorn)", "pipeline.api.orders_per_s", "orders/s"),
        ("seed relay (baseline)", "seed_relay.throughput_events_per_s", "events/s"),
        ("our relay, 1 worker", "relay.one_worker.events_per_s", "events/s"),
        ("our relay, 2 workers", "relay.two_workers.events_per_s", "events/s"),
        ("transformer", "consumers.transformer.events_per_s", "events/s"),
        ("sink", "consumers.sink.events_per_s", "events/s"),
        ("ClickHouse inserts", "consumers.sink.rows_per_s", "rows/s"),
    ]:
        lines.append(f"| {label} | {_fmt(_get(report, path))} {unit} |")
    return lines


def _latency_section(report: dict[str, Any]) -> list[str]:
    lines = ["", "## Latency (ms)", "", "| measure | p50 | p95 | p99 | n |", "|---|---|---|---|---|"]
    for label, path in [
        ("commit → visible in active_orders, on-commit kick", "pipeline.e2e_kick.commit_to_view"),
        ("commit → visible in active_orders, beat alone", "e2e_beat.commit_to_view"),
        ("commit → Kafka ack, our relay, kick", "pipeline.e2e_kick.commit_to_kafka_ack"),
        ("commit → Kafka ack, our relay, beat alone", "e2e_beat.commit_to_kafka_ack"),
        ("commit → Kafka ack, seed relay", "seed_relay.publish_latency"),
        ("HTTP POST /api/orders (closed loop)", "pipeline.api.request"),
    ]:
        d = _get(report, path) or {}
        lines.append(
            f"| {label} | "
            + " | ".join(_fmt(d.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "count"))
            + " |"
        )
    return lines


def _ratios_and_views_section(report: dict[str, Any]) -> list[str]:
    lines = ["", "## Against the seed's relay", "", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report["ratios"].items()]
    lines += ["", "## Views: incremental against refreshable", ""]
    for size, result in report.get("views", {}).items():
        inc, ref = result["incremental"], result["refreshable"]
        lines += [
            f"**{int(size):,} orders** (loaded in {result['load_seconds']} s; incremental state built in "
            f"{inc['build_seconds']} s, its parts merged in {inc.get('build_merges_seconds')} s more; "
            f"windows of {result['window_seconds']} s)",
            "",
            "| figure | incremental | refreshable |",
            "|---|---|---|",
            f"| CPU at rest, cores | {inc['cpu_at_rest_cores']:.3f} | {ref['cpu_at_rest_cores']:.3f} |",
            f"| sink rows/s | {_fmt(inc['ingest']['rows_per_s'])} | {_fmt(ref['ingest']['rows_per_s'])} |",
            f"| CPU while ingesting, cores | {inc['ingest']['cpu_cores']:.3f} | "
            f"{ref['ingest']['cpu_cores']:.3f} |",
            f"| stored -> daily view p50 / p95 ms | {_fmt(inc['visible']['p50_ms'])} / "
            f"{_fmt(inc['visible']['p95_ms'])} | {_fmt(ref['visible']['p50_ms'])} / "
            f"{_fmt(ref['visible']['p95_ms'])} |",
        ]
        for view in ("daily_sales", "hourly_sales", "order_status", "user_analytics", "top_products"):
            a, b = result["views"][f"{view}_mv"], result["views"][f"{view}_refreshable"]
            lines.append(
                f"| {view} p50 / p95 ms | {_fmt(a['p50_ms'])} / {_fmt(a['p95_ms'])} | "
                f"{_fmt(b['p50_ms'])} / {_fmt(b['p95_ms'])} |"
            )
            if "panel_p50_ms" in a:
                lines.append(
                    f"| {view}, its panel's top 10, p50 / p95 ms | {_fmt(a['panel_p50_ms'])} / "
                    f"{_fmt(a['panel_p95_ms'])} | {_fmt(b.get('panel_p50_ms'))} / "
                    f"{_fmt(b.get('panel_p95_ms'))} |"
                )
        lines.append("")
    return lines


# The relays side by side (bench/debezium.py): (column, path of its section in report.json).
RELAYS = (
    ("ours, kick", "debezium.ours_kick"),
    ("ours, beat alone", "debezium.ours_beat"),
    ("Debezium", "debezium.debezium"),
)


def _relays_section(report: dict[str, Any]) -> list[str]:
    if "debezium" not in report:
        return []
    sections = [_get(report, path) or {} for _, path in RELAYS]
    lines = [
        "",
        "## Relays side by side: ours, Debezium's outbox router, the seed's",
        "",
        "| figure | " + " | ".join(label for label, _ in RELAYS) + " | seed relay |",
        "|---|" + "---|" * (len(RELAYS) + 1),
    ]

    def row(label: str, key: str, sub: str, seed: Any = None) -> None:
        values = [(section.get(key) or {}).get(sub) for section in sections]
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in values) + f" | {_fmt(seed)} |")

    seed_latency = _get(report, "seed_relay.publish_latency") or {}
    seed_rate = _get(report, "seed_relay.throughput_events_per_s")
    row("streaming events/s", "streaming", "events_per_s", seed_rate)
    row("writers' orders/s meanwhile", "streaming", "write_orders_per_s")
    row("CPU s per 1,000 events, streaming", "streaming", "cpu_s_per_1000_events")
    for quantile in ("p50_ms", "p95_ms", "p99_ms"):
        row(f"commit → readable on Kafka {quantile[:3]} ms", "latency", quantile, seed_latency.get(quantile))
    lines.append(
        "| peak RSS MB | " + " | ".join(_fmt(section.get("peak_rss_mb")) for section in sections) + " | |"
    )
    snapshot = _get(report, "debezium.snapshot") or {}
    events, rate = _fmt(snapshot.get("events")), _fmt(snapshot.get("events_per_s"))
    since_start, cpu = _fmt(snapshot.get("seconds_from_start")), _fmt(snapshot.get("cpu_s_per_1000_events"))
    ours = _fmt(_get(report, "relay.one_worker.events_per_s"))
    lines += [
        "",
        f"Backlog: Debezium's snapshot of {events} outbox rows ran at {rate} events/s ({since_start} s from "
        f"the worker's start, {cpu} CPU s per 1,000 events with its start-up); our relay drained its "
        f"backlog at {ours} events/s with one worker. The seed relay's latency column is commit → marked "
        "published.",
    ]
    return lines


def _fsync_section(report: dict[str, Any]) -> list[str]:
    result = report.get("fsync")
    if not result:
        return []
    lines = [
        "## ClickHouse inserts, fsync on vs off",
        "",
        f"The sink's write, ms per insert: medians of {result['repeats']} repeats of"
        f" {result['inserts_per_repeat']} inserts each, both modes side by side in one chDB engine.",
        "",
        "| rows/insert | fsync on | fsync off | extra | relative cost |",
        "|---|---|---|---|---|",
    ]
    for r in result["batch_sizes"].values():
        on, off = _fmt(r["fsync_ms_per_insert"]), _fmt(r["no_fsync_ms_per_insert"])
        lines.append(
            f"| {r['rows_per_insert']:,} | {on} | {off}"
            f" | {_fmt(r['extra_ms_per_insert'])} | {_fmt(r['relative_cost'])}x |"
        )
    return [*lines, ""]


def _load_section(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    sustained = _get(report, "pipeline.sustained") or {}
    lines += [
        "## Sustained load",
        "",
        f"{_fmt(sustained.get('achieved_orders_per_s'))} orders/s achieved of "
        f"{_fmt(sustained.get('target_orders_per_s'))} for {_fmt(sustained.get('seconds'))} s; max lag "
        f"{sustained.get('max_lag')}; drained "
        f"{_fmt(sustained.get('drain_after_load_seconds'))} s after the load.",
        "",
    ]
    at_target = _get(report, "pipeline.lag_at_target") or {}
    if at_target:
        lines += [
            f"Lag phase through the service layer ({at_target.get('writers')} writer processes): "
            f"{_fmt(at_target.get('achieved_orders_per_s'))} orders/s achieved of "
            f"{_fmt(at_target.get('target_orders_per_s'))} for {_fmt(at_target.get('seconds'))} s; max lag "
            f"{at_target.get('max_lag')}, max outbox pending {at_target.get('max_outbox_pending')}; "
            f"drained {_fmt(at_target.get('drain_after_load_seconds'))} s after the load.",
            "",
        ]
    return lines


def _memory_section(report: dict[str, Any]) -> list[str]:
    lines = ["## Memory (RSS)", ""]
    memory = report.get("memory", {})
    for key, title in [
        ("pipeline_rest", "pipeline at rest"),
        ("pipeline_api_load", "pipeline under API load"),
        ("pipeline_sustained", "pipeline under sustained load (soak)"),
    ]:
        if key in memory:
            lines += _memory_table(title, memory[key])
    for title, path in [
        ("relay, 1 worker, backlog drain", "relay.one_worker"),
        ("relay, 2 workers", "relay.two_workers"),
        ("transformer, backlog drain", "consumers.transformer"),
        ("sink and chDB gateway, backlog drain", "consumers.sink"),
    ]:
        peaks = _get(report, f"{path}.memory.peak")
        if peaks:
            lines += _memory_table(title, peaks)
            lines += [
                f"growth (MB, last fifth minus second fifth): {_get(report, f'{path}.memory.growth_mb')}",
                "",
            ]
    lines += [f"soak growth (MB): {memory.get('soak_growth_mb')}", ""]
    return lines


def _errors_section(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if report.get("errors"):
        lines += ["## Stages that failed", ""] + [
            f"- {name}: {error}" for name, error in report["errors"].items()
        ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark report {report['started_at']}",
        "",
        f"`{report['command']}` — sizes: " + ", ".join(f"{k}={v}" for k, v in report["sizes"].items()),
        "",
    ]
    for section in (
        _targets_section,
        _throughput_section,
        _latency_section,
        _ratios_and_views_section,
        _relays_section,
        _fsync_section,
        _load_section,
        _memory_section,
        _errors_section,
    ):
        lines += section(report)
    return "\n".join(lines) + "\n"


def latency_png(report: dict[str, Any], samples: dict[str, list[float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(8, 4))
    for label, values in samples.items():
        if values:
            axis.hist(values, bins=40, alpha=0.6, label=label)
    axis.set_xlabel("commit → visible in ClickHouse (ms)")
    axis.set_ylabel("orders")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def write(report: dict[str, Any], out_dir: Path, latency_samples: dict[str, list[float]]) -> None:
    report["ratios"] = ratios(report)
    report["targets"] = targets(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "report.md").write_text(markdown(report))
    latency_png(report, latency_samples, out_dir / "latency.png")
