"""What durable inserts cost: the sink's write of one batch (`ClickHouseWriter.write`, the tombstone
lookup and the insert it makes per batch) into two databases of one chDB engine side by side, one
migrated with fsync on (the default) and one with CLICKHOUSE_FSYNC_AFTER_INSERT off, at several
batch sizes. Each repeat times a few inserts in each database, alternating which goes first; the
figures are the medians over the repeats. One process per run (one chDB engine per process).

    python -m bench.inserts --batch-sizes 10000,1000,100 --repeats 7   # one JSON line (the fsync stage)
    python -m bench.inserts --text                                     # the same as a readable table
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from msgspec.structs import replace

import environment
from consumers.sink import ClickHouseWriter
from contract.events import OrderItem
from contract.rows import AnalyticsRow
from contract.types import EventType, OrderStatus, PaymentMethod, PaymentStatus
from warehouse.client import ClickHouseClient, connect
from warehouse.schema import migrate

MODES = {"fsync": True, "no_fsync": False}


def order_rows(first_id: int, count: int) -> list[AnalyticsRow]:
    """`count` new orders (ids from `first_id`), two lines each, as the transformer makes them."""
    now = datetime.now(UTC)
    items = [
        OrderItem(product_id=7, sku="SKU-0007", product_name="Mug", quantity=2, unit_price="4.50",
                  line_total="9.00"),
        OrderItem(product_id=9, sku="SKU-0009", product_name="Plate", quantity=1, unit_price="12.00",
                  line_total="12.00"),
    ]  # fmt: skip
    template = AnalyticsRow(
        schema_version=1, order_id=first_id, user_id=1, user_email="user1@example.com",
        order_date=now.date(), total_amount="21.00", items_count=3, status=OrderStatus.PAID,
        payment_method=PaymentMethod.CARD, payment_status=PaymentStatus.COMPLETED, created_at=now,
        version=1, event_type=EventType.ORDER_CREATED, deleted_at=None, is_deleted=False, items=items,
    )  # fmt: skip
    return [replace(template, order_id=order_id, user_id=order_id % 5000 + 1)
            for order_id in range(first_id, first_id + count)]  # fmt: skip


def batches(batch_size: int, count: int, first_id: int) -> Iterator[list[AnalyticsRow]]:
    for n in range(count):
        yield order_rows(first_id + n * batch_size, batch_size)


def ms_per_insert(writer: ClickHouseWriter, prepared: list[list[AnalyticsRow]]) -> float:
    started = time.perf_counter()
    for rows in prepared:
        writer.write(rows)
    return (time.perf_counter() - started) * 1000 / len(prepared)


def compare(
    writers: dict[str, ClickHouseWriter], batch_size: int, repeats: int, inserts: int, first_id: int
) -> dict[str, Any]:
    runs: dict[str, list[float]] = {mode: [] for mode in writers}
    for repeat in range(repeats):
        order = list(writers) if repeat % 2 == 0 else list(reversed(writers))
        for mode in order:
            prepared = list(batches(batch_size, inserts, first_id))  # built outside the timing
            first_id += batch_size * inserts
            runs[mode].append(round(ms_per_insert(writers[mode], prepared), 2))
    on, off = statistics.median(runs["fsync"]), statistics.median(runs["no_fsync"])
    return {
        "rows_per_insert": batch_size,
        "fsync_ms_per_insert": round(on, 2),
        "no_fsync_ms_per_insert": round(off, 2),
        "extra_ms_per_insert": round(on - off, 2),
        "relative_cost": round(on / off, 2) if off else float("nan"),
        "fsync_runs_ms": runs["fsync"],
        "no_fsync_runs_ms": runs["no_fsync"],
    }


def prepare(client: ClickHouseClient) -> dict[str, ClickHouseWriter]:
    writers = {}
    for mode, fsync in MODES.items():
        database = f"analytics_{mode}"
        migrate(client, database, fsync_after_insert=fsync)
        writers[mode] = ClickHouseWriter(client, database)
    for writer in writers.values():  # the first insert of a table warms caches: not timed
        writer.write(order_rows(first_id=10**12, count=10))
    return writers


def measure(batch_sizes: list[int], repeats: int, inserts: int, parent: Path) -> dict[str, Any]:
    parent.mkdir(parents=True, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="bench-inserts-", dir=parent)
    try:
        writers = prepare(connect(f"chdb://{directory}"))
        results = {}
        for n, size in enumerate(batch_sizes):
            results[str(size)] = compare(writers, size, repeats, inserts, first_id=1 + n * 10**9)
        return {"repeats": repeats, "inserts_per_repeat": inserts, "data_dir": str(parent),
                "batch_sizes": results}  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def text_report(result: dict[str, Any]) -> str:
    lines = [
        f"the sink's write, ms per insert: medians of {result['repeats']} repeats of"
        f" {result['inserts_per_repeat']} inserts, chDB under {result['data_dir']}",
        "",
        f"{'rows/insert':>12} {'fsync on':>10} {'fsync off':>10} {'extra':>9} {'relative':>9}",
    ]
    for r in result["batch_sizes"].values():
        on, off = r["fsync_ms_per_insert"], r["no_fsync_ms_per_insert"]
        lines.append(
            f"{r['rows_per_insert']:>12,} {on:>10.1f} {off:>10.1f}"
            f" {r['extra_ms_per_insert']:>+9.1f} {r['relative_cost']:>8.2f}x"
        )
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"comma-separated row counts, got {text!r}") from exc
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"row counts must be at least 1, got {text!r}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=_sizes, default=[10_000, 1000, 100], help="rows per insert")
    parser.add_argument("--repeats", type=int, default=7, help="repeats per batch size (the median is kept)")
    parser.add_argument("--inserts", type=int, default=5, help="inserts per mode in each repeat")
    parser.add_argument(
        "--dir", type=Path, default=environment.var_dir(), help="where the scratch chDB directory goes"
    )
    parser.add_argument("--text", action="store_true", help="a readable table instead of one JSON line")
    args = parser.parse_args()
    if args.repeats < 1 or args.inserts < 1:
        parser.error("--repeats and --inserts must be at least 1")
    result = measure(args.batch_sizes, args.repeats, args.inserts, args.dir)
    print(text_report(result) if args.text else json.dumps(result))


if __name__ == "__main__":
    main()
