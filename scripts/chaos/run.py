"""Sets up the fault run's private services, starts the pipeline's roles on them, runs the
scenarios and prints the table. Everything started here is stopped here, on failure and on
Ctrl-C or SIGTERM too.

    python -m scripts.chaos [--orders N] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from scripts.chaos.scenarios import OUTAGE_PARTITION, Row, Run

# Partition 2 has its replicas on brokers 3 and 1, the others on brokers 1 and 2: with broker 3
# stopped, partition 2 keeps one replica in sync and refuses acks=all writes (min ISR 2,
# NotEnoughReplicas), and partitions 0 and 1 work. With three replicas on three brokers every
# partition would lose its quorum at once.
ORDER_EVENTS_REPLICAS = {0: [1, 2], 1: [2, 1], OUTAGE_PARTITION: [3, 1]}

# The relay's and consumers' settings for the run: quick rounds, a short delivery timeout (each
# send to the dead partition waits it out), and few attempts with a short backoff, so an outage
# wrongly charged to the events would park them within seconds.
ROLE_SETTINGS = {
    "OUTBOX_RELAY_INTERVAL": "0.5",
    "KAFKA_PRODUCER_DELIVERY_TIMEOUT": "6",
    "OUTBOX_PARTITION_RECHECK_SECONDS": "1",
    "OUTBOX_MAX_ATTEMPTS": "3",
    "OUTBOX_RETRY_BASE_SECONDS": "0.5",
    "CONSUMER_BATCH_SECONDS": "0.5",
}
# Relay A (this process) holds its lease this long: the stall of scenario 3 outlasts it.
LEASE_SECONDS = "4"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if not 3 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 3 and 1000, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--orders", type=_positive_int, default=30, help="orders per burst of every scenario (default 30)"
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the roles' logs into this folder at the end")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _create_order_events_topic(bootstrap: list[str], topic: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    replica_assignments=ORDER_EVENTS_REPLICAS,
                    topic_configs={"min.insync.replicas": "2"},
                )
            ],
            timeout_ms=30_000,
        )
    finally:
        admin.close()


def _narrow_total_amount(clickhouse: object) -> None:
    """The run's warehouse takes totals up to Decimal(9, 2), narrower than the contract's
    Decimal(18, 2), as after a schema drift: a row the contract accepts is refused as bad data."""
    clickhouse.command("ALTER TABLE analytics.orders_analytics MODIFY COLUMN total_amount Decimal(9, 2)")  # type: ignore[attr-defined]


def print_table(rows: list[Row]) -> None:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("scenario", "what", "count", "expected")]
    header = ("scenario", "check", "count", "expected")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  ok"
    print(line)
    print("-" * len(line))
    for r in rows:
        cells = (r.scenario, r.what, r.count.rjust(widths[2]), r.expected)
        verdict = "  ok" if r.ok else "  FAIL"
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + verdict)


def _start_pipeline(run: Run) -> None:
    from bench.processes import gateway_start

    logs = run.isolation.var_dir / "logs"
    gateway = gateway_start(run.env, run.isolation.var_dir, run.isolation.clickhouse_port, logs)
    run.roles["chdb-gateway"] = gateway
    run.start_role("transformer", ["-m", "consumers", "transformer"])
    run.start_role("sink", ["-m", "consumers", "sink"])
    run.start_role("relay", ["manage.py", "outbox_relay"])


def _scenarios(run: Run, orders: int) -> None:
    from scripts.chaos import scenarios

    print("chaos: 1 poison records …", flush=True)
    _, after = scenarios.scenario_poison(run, orders)
    # The orders after the poison: the first ones also waited for the roles to start.
    baseline = scenarios.commit_to_ack_ms(after)
    run.add("1 poison", "commit->ack median, orders after the poison (ms)", baseline, "reported", ok=True)
    print("chaos: 2 partition outage …", flush=True)
    scenarios.scenario_outage(run, orders, baseline)
    print("chaos: 3 lease expiry …", flush=True)
    scenarios.scenario_lease(run, max(2, orders // 3))
    print("chaos: 4 totals …", flush=True)
    scenarios.scenario_totals(run)
    scenarios.scenario_order(run)


def chaos(args: argparse.Namespace) -> list[Row]:
    from scripts.kafka_cluster import PrivateKafka

    # Three brokers starting on a busy machine can take longer than kafka.sh's default 90 s.
    os.environ.setdefault("KAFKA_START_TIMEOUT", "240")
    cluster = PrivateKafka.create()
    run: Run | None = None
    isolation = None
    try:
        started = time.monotonic()
        cluster.start()
        seconds = time.monotonic() - started
        print(f"chaos: private Kafka cluster on {','.join(cluster.bootstrap)} ({seconds:.0f}s)", flush=True)
        # Every Kafka client of the run, this process's included, talks to the private cluster.
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = ",".join(cluster.bootstrap)
        from bench.isolation import Isolation

        isolation = Isolation.create("chaos")
        print(
            f"chaos: run {isolation.run_id}: database {isolation.database_name}, chDB in", isolation.var_dir
        )
        _create_order_events_topic(cluster.bootstrap, isolation.order_events_topic)
        isolation.prepare()
        env = isolation.env(**ROLE_SETTINGS)
        os.environ.update(env)
        os.environ["OUTBOX_LEASE_SECONDS"] = LEASE_SECONDS
        import clickhouse_connect
        import django

        django.setup()
        # The clients of this process meet a stopped broker on purpose: their reconnects are noise.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        from bench.workload import catalogue_create

        catalogue = catalogue_create(isolation.run_id)
        run = Run(isolation, cluster, env, catalogue, clickhouse=None)
        _start_pipeline(run)
        run.clickhouse = clickhouse_connect.get_client(dsn=isolation.clickhouse_url)
        _narrow_total_amount(run.clickhouse)
        _scenarios(run, args.orders)
        # The table reads by scenario; the order check of scenario 3 covers every order of the run.
        return sorted(run.rows, key=lambda row: row.scenario)
    except BaseException:
        if isolation is not None:
            _log_tails(isolation.var_dir / "logs")
        raise
    finally:
        if run is not None:
            for role in reversed(list(run.roles.values())):
                role.stop(timeout=30)
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in (isolation.var_dir / "logs").glob("*.log"):  # type: ignore[union-attr]
                    shutil.copy(log, args.keep_logs / log.name)
        if isolation is not None:
            isolation.cleanup()
        cluster.remove()


def _log_tails(run_dir: Path) -> None:
    for log in sorted(run_dir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-20:]
        print(f"--- {log.name} ---", *tail, sep="\n", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        rows = chaos(args)
    except KeyboardInterrupt:
        print("chaos: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("chaos: the run failed before its checks; everything it started is stopped", file=sys.stderr)
        return 1
    print_table(rows)
    failed = [r for r in rows if not r.ok]
    seconds = time.monotonic() - started
    if failed:
        print(f"chaos: {len(failed)} of {len(rows)} checks FAILED ({seconds:.0f}s)")
        return 1
    print(f"chaos: all {len(rows)} checks passed ({seconds:.0f}s)")
    return 0
