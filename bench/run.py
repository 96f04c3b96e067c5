"""`make bench`: measures every stage of the pipeline on the local services and writes
bench-results/<timestamp>/report.json, report.md and (with matplotlib) latency.png.

    python -m bench [--smoke] [--backlog N] [--soak-seconds S] [...]

The run is isolated from everything else on the machine: its own MariaDB database
(test_ecommerce_bench_<id>, dropped at the end), Kafka topics and consumer groups, Celery queue,
chDB directory and free ports. `--smoke` runs every stage at tiny sizes (CI); the defaults are the
issue's sizes (1,000,000-event backlog, 10-minute soak, the views at 1,000,000 and 10,000,000
orders). A stage that fails is recorded in the report and the run goes on with the next, so the
report always says what was and was not measured; the exit status is 1 then.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import debezium
from bench.isolation import REPO_DIR, Isolation
from bench.stages import Sizes

FULL = Sizes(
    service_orders=2000, api_orders=3000, api_threads=16, backlog=1_000_000, backlog_two_workers=200_000,
    seed_ticks=3, seed_latency_seconds=15, latency_rate=10, latency_seconds=30, target_rate=300,
    soak_seconds=600, lag_seconds=60, lag_writers=4, view_sizes=(1_000_000, 10_000_000), view_runs=20,
    rest_seconds=10, fsync_batch_sizes=(10_000, 1000, 100), fsync_repeats=7, fsync_inserts=5,
)  # fmt: skip
SMOKE = Sizes(
    service_orders=50, api_orders=100, api_threads=8, backlog=2000, backlog_two_workers=1000,
    seed_ticks=1, seed_latency_seconds=5, latency_rate=5, latency_seconds=4, target_rate=20,
    soak_seconds=4, lag_seconds=3, lag_writers=2, view_sizes=(1000, 10_000), view_runs=3, rest_seconds=2,
    fsync_batch_sizes=(100, 10), fsync_repeats=3, fsync_inserts=2,
)  # fmt: skip


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def parse_sizes(argv: list[str] | None) -> tuple[Sizes, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: every stage in a few minutes")
    parser.add_argument("--out", type=Path, default=REPO_DIR / "bench-results", help="results folder")
    env = os.environ
    for name, kind, help_text in [
        ("backlog", int, "outbox events the relay (one worker) and then the consumers drain [BENCH_BACKLOG]"),
        ("backlog-two-workers", int, "outbox events for the two-worker relay run"),
        ("soak-seconds", float, "duration of the sustained load at --target-rate [BENCH_SOAK_SECONDS]"),
        ("target-rate", float, "orders/s of the sustained load and of the lag phase"),
        ("lag-seconds", float, "duration of the lag phase at --target-rate through the service layer"),
        ("lag-writers", int, "writer processes of the lag phase, --target-rate shared between them"),
        ("api-orders", int, "orders for the API throughput run"),
        ("service-orders", int, "orders for the service-layer throughput run"),
        ("latency-seconds", float, "duration of each end-to-end latency run"),
        ("relay-batch-size", int, "rows per relay claim (default: OUTBOX_RELAY_BATCH_SIZE)"),
    ]:
        env_name = f"BENCH_{name.upper().replace('-', '_')}"
        default = env.get(env_name) or None
        parser.add_argument(
            f"--{name}", type=_positive(kind), default=default and kind(default), help=help_text
        )
    parser.add_argument(
        "--view-sizes", default=None, help="comma-separated order counts for the view queries"
    )
    parser.add_argument(
        "--fsync-batch-sizes", default=None, help="comma-separated rows per insert for the fsync stage"
    )
    parser.add_argument(
        "--fsync-repeats", type=_positive(int), default=None, help="repeats per batch size, fsync stage"
    )
    parser.add_argument("--profile", action="store_true", help="profile the one-worker relay with py-spy")
    parser.add_argument(
        "--repeat",
        type=_positive(int),
        default=1,
        help="run the whole benchmark N times and write medians.md over the runs",
    )
    parser.add_argument(
        "--skip", action="append", default=[], choices=STAGE_NAMES, help="leave a stage out (repeatable)"
    )
    args = parser.parse_args(argv)
    base = SMOKE if args.smoke else FULL
    changes: dict[str, Any] = {"profile": args.profile}
    for field_name in ("backlog", "backlog_two_workers", "soak_seconds", "target_rate", "lag_seconds",
                       "lag_writers", "api_orders", "service_orders", "latency_seconds",
                       "relay_batch_size"):  # fmt: skip
        if getattr(args, field_name) is not None:
            changes[field_name] = getattr(args, field_name)
    for option in ("view_sizes", "fsync_batch_sizes"):
        text = getattr(args, option)
        if text:
            try:
                changes[option] = tuple(int(s) for s in text.split(",") if s.strip())
            except ValueError:
                changes[option] = ()
            if not changes[option] or min(changes[option]) < 1:
                flag = "--" + option.replace("_", "-")
                parser.error(f"{flag} must be comma-separated positive integers, got {text!r}")
    if args.fsync_repeats is not None:
        changes["fsync_repeats"] = args.fsync_repeats
    from dataclasses import replace

    return replace(base, **changes), args


STAGE_NAMES = [
    "service_layer",
    "seed_relay",
    "relay",
    "consumers",
    "pipeline",
    "e2e_beat",
    "views",
    "fsync",
    "debezium",
]


def run(sizes: Sizes, out_root: Path, skip: list[str], command: str) -> tuple[Path, dict[str, Any]]:
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = out_root / started_at
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    isolation = Isolation.create()
    report: dict[str, Any] = {
        "started_at": started_at,
        "command": command,
        "sizes": {k: v for k, v in sizes.__dict__.items()},
        "machine": {"cpus": os.cpu_count()},
        "errors": {},
    }
    print(f"bench: run {isolation.run_id}, results in {out_dir}", flush=True)
    from bench import report as report_writer
    from bench import stages

    clock = time.monotonic()
    try:
        isolation.prepare()
        os.environ.update(isolation.env())
        import django

        django.setup()
        from bench.workload import catalogue_create

        ctx = stages.Context(isolation, sizes, catalogue_create(isolation.run_id), out_dir)
        plan: list[tuple[str, Callable[[stages.Context], dict[str, Any]]]] = [
            ("service_layer", stages.stage_service_layer),
            ("seed_relay", stages.stage_seed_relay),
            ("relay", stages.stage_relay),
            ("consumers", stages.stage_consumers),
            ("pipeline", stages.stage_pipeline_kick),
            ("e2e_beat", stages.stage_pipeline_beat),
            ("views", stages.stage_views),
            ("fsync", stages.stage_fsync),
            ("debezium", debezium.stage_debezium),
        ]
        for name, stage in plan:
            if name in skip:
                continue
            stage_started = time.monotonic()
            print(f"bench: {name} …", flush=True)
            try:
                report[name] = stage(ctx)
            except Exception as exc:  # the report says what failed; the next stage still runs
                report["errors"][name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            print(f"bench: {name} done in {time.monotonic() - stage_started:.0f}s", flush=True)
            # What is measured so far survives a run stopped later on.
            (out_dir / "partial.json").write_text(json.dumps(report, indent=2, default=str))
        report["memory"] = ctx.memory
        samples = ctx.latency_samples
    finally:
        isolation.cleanup()
    report["seconds"] = round(time.monotonic() - clock, 1)
    report_writer.write(report, out_dir, samples)
    return out_dir, report


def _without(argv: list[str], *options: str) -> list[str]:
    """argv without the given options and their values (`--opt value` or `--opt=value`)."""
    kept: list[str] = []
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg in options:
            skip_next = True
        elif not any(arg.startswith(f"{option}=") for option in options):
            kept.append(arg)
    return kept


def repeat(argv: list[str], times: int, out: Path) -> int:
    """Runs the benchmark `times` times, each in a process of its own (a run's Django settings
    name its own database), then writes medians.md over the runs."""
    import subprocess

    from bench import medians

    out_root = out / f"repeat-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    # Each run writes under out_root, which stands in for the --out given.
    args = [*_without(argv, "--repeat", "--out"), "--out", str(out_root)]
    failed = False
    for attempt in range(times):
        print(f"bench: run {attempt + 1} of {times}", flush=True)
        failed = subprocess.call([sys.executable, "-m", "bench", *args], cwd=REPO_DIR) != 0 or failed
    run_dirs = sorted(d for d in out_root.iterdir() if (d / "report.json").is_file())
    if not run_dirs:
        print("bench: no run wrote a report", file=sys.stderr)
        return 1
    path = medians.write(run_dirs, out_root)
    print(path.read_text())
    print(f"bench: medians of {len(run_dirs)} runs in {path}")
    return 1 if failed else 0


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so every stage stops its processes and the run cleans up.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    sizes, args = parse_sizes(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.repeat > 1:
        return repeat(argv if argv is not None else sys.argv[1:], args.repeat, args.out)
    out_dir, report = run(sizes, args.out, args.skip, command.strip())
    print((out_dir / "report.md").read_text())
    print(f"bench: report in {out_dir}/report.json and report.md ({report['seconds']:.0f}s)")
    failed = bool(report["errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
