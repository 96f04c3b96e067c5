"""The benchmark's stages. Each takes the run's context and returns its section of the report
(plain numbers, JSON-ready). They run in the order of bench/run.py, each on the state the one
before left: the outbox backlog feeds the relay, the relayed topic feeds the consumers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.isolation import REPO_DIR, Isolation
from bench.memory import MemoryLog, MemorySampler
from bench.processes import BenchError, Process, gateway_start, pipeline_start, python_role, wait_until
from bench.seed_relay import SEED_TICK_SECONDS, seed_relay_run
from bench.workload import (
    Catalogue,
    VisibilityProbe,
    backlog_insert,
    http_closed_loop,
    http_open_loop,
    outbox_counts,
    service_order_create,
    service_orders,
)
from scripts.pipeline_checks import kafka_state, percentile


@dataclass(frozen=True)
class Sizes:
    service_orders: int
    api_orders: int
    api_threads: int
    backlog: int
    backlog_two_workers: int
    seed_ticks: int
    seed_latency_seconds: float
    latency_rate: float
    latency_seconds: float
    target_rate: float
    soak_seconds: float
    # The lag phase at the target rate, through the service layer (see lag_at_target).
    lag_seconds: float
    lag_writers: int
    view_sizes: tuple[int, ...]
    view_runs: int
    rest_seconds: float
    # The sink's insert with fsync on and off (bench/inserts.py): rows per insert, repeats, inserts.
    fsync_batch_sizes: tuple[int, ...]
    fsync_repeats: int
    fsync_inserts: int
    relay_batch_size: int | None = None
    profile: bool = False


@dataclass
class Context:
    isolation: Isolation
    sizes: Sizes
    catalogue: Catalogue
    out_dir: Path
    memory: dict[str, Any] = field(default_factory=dict)
    latency_samples: dict[str, list[float]] = field(default_factory=dict)
    # Topics and consumer groups of the current pipeline phase (see fresh_phase).
    phase_env: dict[str, str] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.out_dir / "logs"

    def env(self, **overrides: str) -> dict[str, str]:
        return self.isolation.env(**{**self.phase_env, **overrides})

    def fresh_phase(self, name: str) -> None:
        """New topics and consumer groups for a pipeline phase: its consumers start empty groups
        instead of rejoining the groups of the stage before (a restarted member sometimes never got
        its partitions back), and the phase's lag counts only its own orders."""
        run_id = self.isolation.run_id
        self.phase_env = {
            "ORDER_EVENTS_TOPIC": f"bench-{run_id}.{name}.order.events",
            "ANALYTICS_TOPIC": f"bench-{run_id}.{name}.orders_analytics",
            "TRANSFORMER_GROUP_ID": f"bench-{run_id}-{name}-transformer",
            "SINK_GROUP_ID": f"bench-{run_id}-{name}-sink",
        }


def distribution(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"count": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    return {
        "count": len(values_ms),
        "p50_ms": round(percentile(values_ms, 0.50), 1),
        "p95_ms": round(percentile(values_ms, 0.95), 1),
        "p99_ms": round(percentile(values_ms, 0.99), 1),
        "max_ms": round(max(values_ms), 1),
    }


def publish_latencies_ms(order_ids: list[int]) -> list[float]:
    """Outbox row written → marked published after Kafka's ack, for these orders' events."""
    from outbox.models import OutboxEvent

    rows = OutboxEvent.objects.filter(
        aggregate_type="order", aggregate_id__in=[str(i) for i in order_ids], published_at__isnull=False
    ).values_list("created_at", "published_at")
    return [(published - created).total_seconds() * 1000 for created, published in rows if published]


def kafka_admin(ctx: Context) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=ctx.env()["KAFKA_BOOTSTRAP_SERVERS"].split(","), request_timeout_ms=30_000
    )


def lags(ctx: Context, admin: Any) -> dict[str, int]:
    env = ctx.env()
    return {
        "transformer": kafka_state(admin, env["ORDER_EVENTS_TOPIC"], env["TRANSFORMER_GROUP_ID"]).lag,
        "sink": kafka_state(admin, env["ANALYTICS_TOPIC"], env["SINK_GROUP_ID"]).lag,
    }


# --- writes --------------------------------------------------------------------------------------


def stage_service_layer(ctx: Context) -> dict[str, Any]:
    rate = service_orders(ctx.catalogue, ctx.sizes.service_orders)
    return {"orders": ctx.sizes.service_orders, "orders_per_s": round(rate, 1), "threads": 1}


# --- the seed's relay (baseline) ----------------------------------------------------------------


def stage_seed_relay(ctx: Context) -> dict[str, Any]:
    """Latency first (orders trickling in at a rate the seed keeps up with), then throughput on a
    backlog larger than the seed can drain in the run."""
    from outbox.models import OutboxEvent, OutboxStatus

    topic = ctx.isolation.seed_topic
    # Whatever the service-layer stage left pending stays out of the seed's way: it waits for ours.
    held = list(OutboxEvent.objects.filter(status=OutboxStatus.PENDING).values_list("pk", flat=True))
    OutboxEvent.objects.filter(pk__in=held).update(status="held")

    stop = threading.Event()
    ticks = int(ctx.sizes.seed_latency_seconds // SEED_TICK_SECONDS) + 2
    result: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: result.setdefault("run", seed_relay_run(topic=topic, ticks=ticks, stop=stop)),
        daemon=True,
    )
    runner.start()
    from orders.models import Order

    first_new = (Order.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    rate = 4.0
    count = int(rate * ctx.sizes.seed_latency_seconds)
    started = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
        service_order_create(ctx.catalogue, n)
    runner.join(timeout=ticks * SEED_TICK_SECONDS + 60)
    stop.set()
    new_ids = list(Order.objects.filter(id__gte=first_new).values_list("id", flat=True))
    latency = distribution(publish_latencies_ms(new_ids))

    # Throughput: a backlog of more than the seed can take in the run.
    backlog = ctx.sizes.seed_ticks * 100 + 100
    backlog_insert(backlog)
    run = seed_relay_run(topic=topic, ticks=ctx.sizes.seed_ticks)
    # The rest of that backlog and the held rows go to our relay in the next stage.
    OutboxEvent.objects.filter(pk__in=held).update(status=OutboxStatus.PENDING)
    return {
        "algorithm": "one batch of 100 per 5 s tick, one awaited send per event, marked after the loop",
        "throughput_events_per_s": round(run.published / run.seconds, 2),
        "published": run.published,
        "seconds": round(run.seconds, 1),
        "publish_latency": latency,
        "latency_load_orders_per_s": rate,
    }


# --- our relay ------------------------------------------------------------------------------------


def relay_drain(ctx: Context, workers: int, label: str) -> dict[str, Any]:
    pending = outbox_counts().get("pending", 0)
    args = ["manage.py", "outbox_relay", "--once", "--time-budget", "100000"]
    if ctx.sizes.relay_batch_size:
        args += ["--batch-size", str(ctx.sizes.relay_batch_size)]
    relays: list[Process] = []
    profile_path = ctx.out_dir / f"profile-{label}.txt"
    started = time.monotonic()
    for i in range(workers):
        if ctx.sizes.profile and i == 0:
            command = ["-m", "bench.profiling", str(profile_path), "--", sys.executable, *args]
            relays.append(python_role(f"relay-{label}-{i}", command, ctx.env(), ctx.log_dir))
        else:
            relays.append(python_role(f"relay-{label}-{i}", args, ctx.env(), ctx.log_dir))
    with MemorySampler(lambda: [r.pid for r in relays]) as sampler:
        for relay in relays:
            relay.wait(timeout=3600)
    seconds = time.monotonic() - started
    for relay in relays:
        if relay.popen.returncode != 0:
            raise BenchError(f"{relay.name} exited with {relay.popen.returncode}; see {relay.log_path}")
    left = outbox_counts().get("pending", 0)
    samples = sampler.log.samples
    section: dict[str, Any] = {
        "workers": workers,
        "events": pending - left,
        "left_pending": left,
        "seconds": round(seconds, 1),
        "events_per_s": round((pending - left) / seconds, 1),
        "memory": {"peak": MemoryLog.peaks(samples), "growth_mb": MemoryLog.growth(samples)},
    }
    if ctx.sizes.profile and profile_path.exists():
        section["profile"] = str(profile_path.relative_to(ctx.out_dir))
    return section


def stage_relay(ctx: Context) -> dict[str, Any]:
    pending = outbox_counts().get("pending", 0)
    backlog_insert(max(0, ctx.sizes.backlog - pending))
    one = relay_drain(ctx, 1, "one-worker")
    backlog_insert(ctx.sizes.backlog_two_workers)
    two = relay_drain(ctx, 2, "two-workers")
    return {"one_worker": one, "two_workers": two}


# --- consumers -------------------------------------------------------------------------------------


def drain_group(ctx: Context, admin: Any, role: str, timeout: float) -> dict[str, float]:
    """Waits until `role`'s group has consumed its topic. The busy time runs from the last sample
    that still showed no progress (the work began after it: a lower bound on the rate, however
    short the drain) to the first that shows none left."""
    first_lag = lags(ctx, admin)[role]
    started = time.monotonic()
    idle_until = started
    deadline = started + timeout
    while True:
        lag = lags(ctx, admin)[role]
        now = time.monotonic()
        if lag == 0:
            break
        if lag >= first_lag:
            idle_until = now
        if now > deadline:
            raise BenchError(f"{role} still lags {lag} after {timeout:.0f}s")
        time.sleep(0.25)
    busy = max(0.01, now - idle_until)
    return {"events": first_lag, "seconds": round(busy, 2), "seconds_with_startup": round(now - started, 1)}


def clickhouse_count(ctx: Context, table: str) -> int:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=ctx.isolation.clickhouse_url)
    return int(client.query(f"SELECT count() FROM analytics.{table}").result_rows[0][0])


def stage_consumers(ctx: Context) -> dict[str, Any]:
    admin = kafka_admin(ctx)
    env = ctx.env()
    timeout = 600 + ctx.sizes.backlog / 1000
    transformer = python_role("transformer", ["-m", "consumers", "transformer"], env, ctx.log_dir)
    try:
        with MemorySampler(lambda: [transformer.pid]) as sampler:
            drained = drain_group(ctx, admin, "transformer", timeout)
        transformer_section = {
            **drained,
            "events_per_s": round(drained["events"] / drained["seconds"], 1),
            "memory": {
                "peak": MemoryLog.peaks(sampler.log.samples),
                "growth_mb": MemoryLog.growth(sampler.log.samples),
            },
        }
    finally:
        transformer.stop()
    gateway = gateway_start(env, ctx.isolation.var_dir, ctx.isolation.clickhouse_port, ctx.log_dir)
    try:
        sink = python_role("sink", ["-m", "consumers", "sink"], env, ctx.log_dir)
        try:
            with MemorySampler(lambda: [sink.pid, gateway.pid]) as sampler:
                drained = drain_group(ctx, admin, "sink", timeout)
            rows = clickhouse_count(ctx, "orders_analytics")
            sink_section = {
                **drained,
                "rows_in_clickhouse": rows,
                "events_per_s": round(drained["events"] / drained["seconds"], 1),
                "rows_per_s": round(rows / drained["seconds"], 1),
                "memory": {
                    "peak": MemoryLog.peaks(sampler.log.samples),
                    "growth_mb": MemoryLog.growth(sampler.log.samples),
                },
            }
        finally:
            sink.stop()
    finally:
        gateway.stop()
        admin.close()
    return {"transformer": transformer_section, "sink": sink_section}


# --- the whole pipeline ------------------------------------------------------------------------------


def wait_drained(ctx: Context, admin: Any, timeout: float, supervisor: Process) -> float:
    started = time.monotonic()

    def drained() -> bool:
        return outbox_counts().get("pending", 0) == 0 and not any(lags(ctx, admin).values())

    wait_until("pipeline drained", drained, timeout, supervisor)
    return time.monotonic() - started


def e2e_latency(ctx: Context, label: str, probe_interval: float = 0.1) -> dict[str, Any]:
    probe = VisibilityProbe(ctx.isolation.clickhouse_url, "analytics", probe_interval)
    probe.start()
    load = http_open_loop(
        ctx.isolation.web_url,
        ctx.catalogue,
        ctx.sizes.latency_rate,
        ctx.sizes.latency_seconds,
        8,
        on_commit=probe.committed,
    )
    never_seen = probe.stop(drain_timeout=60)
    ctx.latency_samples[label] = probe.latencies_ms
    ids = list(load.committed_at)
    return {
        "orders": load.orders,
        "rate_orders_per_s": ctx.sizes.latency_rate,
        "errors": load.errors,
        "not_visible_after_60s": never_seen,
        "commit_to_view": distribution(probe.latencies_ms),
        "commit_to_kafka_ack": distribution(publish_latencies_ms(ids)),
        "probe_query_p50_ms": round(percentile(probe.query_ms, 0.5), 1) if probe.query_ms else float("nan"),
    }


class LagSampler:
    """Samples the consumer groups' lag and the outbox's pending rows every second while a load
    runs (a context manager)."""

    def __init__(self, ctx: Context, admin: Any) -> None:
        self._ctx, self._admin = ctx, admin
        self.samples: list[dict[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.samples.append(
                    {**lags(self._ctx, self._admin), "outbox": outbox_counts().get("pending", 0)}
                )
            except Exception:  # one missed sample is not a result
                continue

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def summary(self) -> dict[str, Any]:
        return {
            "max_lag": {
                role: max((s[role] for s in self.samples), default=0) for role in ("transformer", "sink")
            },
            "max_outbox_pending": max((s["outbox"] for s in self.samples), default=0),
            "lag_samples": len(self.samples),
        }


def lag_at_target(ctx: Context, admin: Any, supervisor: Process) -> dict[str, Any]:
    """Consumer lag with orders arriving at the target rate, written through the service layer by
    a few processes (the same commit, outbox event and on-commit kick as the API, without HTTP):
    the pipeline behind the database is measured at the rate the web role may not reach here."""
    writers = ctx.sizes.lag_writers
    rate = ctx.sizes.target_rate / writers
    users = ",".join(map(str, ctx.catalogue.user_ids))
    products = ",".join(map(str, ctx.catalogue.product_ids))
    env = ctx.env(OUTBOX_KICK_ON_COMMIT="1")
    outs = [ctx.out_dir / f"service-load-{i}.json" for i in range(writers)]
    with LagSampler(ctx, admin) as lag:
        loads = [
            python_role(
                f"service-load-{i}",
                ["-m", "bench.service_load", "--rate", str(rate), "--seconds", str(ctx.sizes.lag_seconds),
                 "--users", users, "--products", products, "--offset", str(i * 7919), "--out", str(out)],
                env,
                ctx.log_dir,
            )
            for i, out in enumerate(outs)
        ]  # fmt: skip
        for load in loads:
            if load.wait(timeout=ctx.sizes.lag_seconds + 120) != 0:
                raise BenchError(f"{load.name} exited with {load.popen.returncode}; see {load.log_path}")
    supervisor.check_alive()
    drain_seconds = wait_drained(ctx, admin, 600, supervisor)
    done = [json.loads(out.read_text()) for out in outs]
    orders = sum(d["orders"] for d in done)
    seconds = max(d["seconds"] for d in done)
    return {
        "target_orders_per_s": ctx.sizes.target_rate,
        "writers": writers,
        "achieved_orders_per_s": round(orders / seconds, 1) if seconds else 0.0,
        "orders": orders,
        "errors": sum(d["errors"] for d in done),
        "dropped_behind_schedule": sum(d["dropped"] for d in done),
        "seconds": seconds,
        **lag.summary(),
        "drain_after_load_seconds": round(drain_seconds, 1),
    }


def stage_pipeline_kick(ctx: Context) -> dict[str, Any]:
    ctx.fresh_phase("kick")
    env = ctx.env(OUTBOX_KICK_ON_COMMIT="1")
    supervisor = pipeline_start(env, ctx.isolation.var_dir, ctx.isolation.web_url, ctx.log_dir)
    admin = kafka_admin(ctx)
    result: dict[str, Any] = {}
    try:
        with MemorySampler(lambda: [supervisor.pid], interval=1.0) as sampler:
            mark = time.monotonic()
            time.sleep(ctx.sizes.rest_seconds)
            rest = MemoryLog.peaks(sampler.log.phase(mark, time.monotonic()))

            mark = time.monotonic()
            api = http_closed_loop(
                ctx.isolation.web_url, ctx.catalogue, ctx.sizes.api_orders, ctx.sizes.api_threads
            )
            api_load = MemoryLog.peaks(sampler.log.phase(mark, time.monotonic()))
            result["api"] = {
                "orders": api.orders,
                "errors": api.errors,
                "threads": ctx.sizes.api_threads,
                "orders_per_s": round(api.rate, 1),
                "request": distribution(api.latencies_ms),
                "web_workers": int(env.get("WEB_WORKERS", "") or 3),
            }
            result["drain_after_api_seconds"] = round(wait_drained(ctx, admin, 300, supervisor), 1)
            result["e2e_kick"] = e2e_latency(ctx, "on-commit kick")
            supervisor.check_alive()

            mark = time.monotonic()
            with LagSampler(ctx, admin) as lag:
                load = http_open_loop(
                    ctx.isolation.web_url, ctx.catalogue, ctx.sizes.target_rate, ctx.sizes.soak_seconds, 64
                )
            supervisor.check_alive()
            soak_samples = sampler.log.phase(mark, time.monotonic())
            drain_seconds = wait_drained(ctx, admin, 600, supervisor)
            result["sustained"] = {
                "target_orders_per_s": ctx.sizes.target_rate,
                "achieved_orders_per_s": round(load.rate, 1),
                "seconds": round(load.seconds, 1),
                "orders": load.orders,
                "errors": load.errors,
                "dropped_behind_schedule": load.dropped,
                "request_delay_from_schedule": distribution(load.latencies_ms),
                **lag.summary(),
                "drain_after_load_seconds": round(drain_seconds, 1),
            }
            result["lag_at_target"] = lag_at_target(ctx, admin, supervisor)
            ctx.memory["pipeline_rest"] = rest
            ctx.memory["pipeline_api_load"] = api_load
            ctx.memory["pipeline_sustained"] = MemoryLog.peaks(soak_samples)
            ctx.memory["soak_growth_mb"] = MemoryLog.growth(soak_samples)
            ctx.memory["soak_seconds"] = ctx.sizes.soak_seconds
    finally:
        admin.close()
        supervisor.stop(timeout=120)
    return result


def stage_pipeline_beat(ctx: Context) -> dict[str, Any]:
    ctx.fresh_phase("beat")
    env = ctx.env(OUTBOX_KICK_ON_COMMIT="0")
    supervisor = pipeline_start(env, ctx.isolation.var_dir, ctx.isolation.web_url, ctx.log_dir)
    try:
        result = e2e_latency(ctx, "beat alone")
        supervisor.check_alive()
        return result
    finally:
        supervisor.stop(timeout=120)


# --- views ---------------------------------------------------------------------------------------------


def stage_views(ctx: Context) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for orders in ctx.sizes.view_sizes:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.views",
                "--orders",
                str(orders),
                "--runs",
                str(ctx.sizes.view_runs),
                "--window",
                str(ctx.sizes.rest_seconds),
                "--samples",
                str(max(2, ctx.sizes.view_runs // 4)),
            ],
            cwd=REPO_DIR,
            env=ctx.env(),
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"view benchmark at {orders} orders failed:\n{done.stderr[-2000:]}")
        results[str(orders)] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


# --- durable inserts -----------------------------------------------------------------------------------


def stage_fsync(ctx: Context) -> dict[str, Any]:
    """The sink's insert with fsync on and off side by side, in a process of its own
    (bench/inserts.py), its chDB directory beside the run's."""
    sizes = ctx.sizes
    done = subprocess.run(
        [sys.executable, "-m", "bench.inserts",
         "--batch-sizes", ",".join(str(size) for size in sizes.fsync_batch_sizes),
         "--repeats", str(sizes.fsync_repeats), "--inserts", str(sizes.fsync_inserts),
         "--dir", str(ctx.isolation.var_dir)],
        cwd=REPO_DIR, env=ctx.env(), capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"insert benchmark failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
