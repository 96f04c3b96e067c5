"""An open-loop order load through the service layer, in a process of its own:

    python -m bench.service_load --rate R --seconds S --users 1,2,... --products 7,8,... --out F.json

The benchmark starts a few of these to put the target rate on the pipeline when the HTTP role
cannot serve it on the same cores: orders are committed exactly as the API commits them (the same
service, the same transaction, the outbox event and the on-commit relay kick), only without HTTP.
An order whose slot has passed by more than a second is dropped and counted, not sent late, so a
writer that falls behind shows as a lower achieved rate. Writes a JSON summary to --out."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _ids(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service_load")
    parser.add_argument("--rate", type=float, required=True, help="orders/s of this process")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--users", type=_ids, required=True)
    parser.add_argument("--products", type=_ids, required=True)
    parser.add_argument("--offset", type=int, default=0, help="spreads processes over the catalogue")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from bench.workload import Catalogue, service_order_create

    catalogue = Catalogue(args.users, args.products)
    total = int(args.rate * args.seconds)
    orders = errors = dropped = 0
    started = time.monotonic()
    for n in range(total):
        due = started + n / args.rate
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        elif now - due > 1.0:
            dropped += 1
            continue
        try:
            service_order_create(catalogue, args.offset + n)
            orders += 1
        except Exception as exc:  # counted and shown once; the load goes on
            if not errors:
                print(f"order failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            errors += 1
    seconds = time.monotonic() - started
    summary = {"orders": orders, "errors": errors, "dropped": dropped, "seconds": round(seconds, 2)}
    args.out.write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
