"""View query latency at a given number of orders, as JSON on stdout. It reuses the loader and the
timing of consumers.bench_views and runs in a process of its own (one chDB engine per process).

    python -m bench.views --orders 100000 --runs 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from functools import partial

from consumers.bench_views import DB, VIEWS, load, refresh, timed
from warehouse.client import connect
from warehouse.schema import migrate


def measure(orders: int, runs: int) -> dict[str, object]:
    directory = tempfile.mkdtemp(prefix="bench-views-")
    try:
        client = connect(f"chdb://{directory}")
        migrate(client, DB)
        started = time.perf_counter()
        load(client, orders)
        load_seconds = time.perf_counter() - started
        views: dict[str, dict[str, float]] = {}
        for view in VIEWS:
            p50, p95 = timed(partial(client.query, f"SELECT * FROM {DB}.{view}_live"), runs)
            views[f"{view}_live"] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
        for view in VIEWS:
            refresh_ms = timed(partial(refresh, client, f"{view}_mv"), 3)[0]
            p50, p95 = timed(partial(client.query, f"SELECT * FROM {DB}.{view}_mv"), runs)
            views[f"{view}_mv"] = {
                "p50_ms": round(p50, 2),
                "p95_ms": round(p95, 2),
                "refresh_ms": round(refresh_ms, 1),
            }
        return {"orders": orders, "load_seconds": round(load_seconds, 1), "views": views}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(measure(args.orders, args.runs)))


if __name__ == "__main__":
    main()
