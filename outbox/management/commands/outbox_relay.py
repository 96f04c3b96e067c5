"""Run the outbox relay in the foreground: once (drain until empty or the time budget is spent),
or continuously, polling every OUTBOX_RELAY_INTERVAL seconds when there is nothing to do."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbox.relay import relay_run


class Command(BaseCommand):
    help = "Relay committed outbox events to Kafka in the foreground."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one run, then exit")
        parser.add_argument("--batch-size", type=int, default=None, help="rows per claim")
        parser.add_argument("--time-budget", type=float, default=None, help="seconds per run")
        parser.add_argument("--interval", type=float, default=None, help="idle poll interval (seconds)")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("batch_size", "time_budget", "interval"):
            if options[name] is not None and options[name] <= 0:
                raise CommandError(f"--{name.replace('_', '-')} must be greater than 0")
        interval = options["interval"] or settings.OUTBOX_RELAY_INTERVAL
        while True:
            result = relay_run(time_budget=options["time_budget"], batch_size=options["batch_size"])
            self.stdout.write(
                f"published={result.published} failed={result.failed} parked={result.parked} "
                f"batches={result.batches} seconds={result.seconds:.2f}"
                + (" kafka=unreachable" if result.outage else "")
            )
            if options["once"]:
                return
            if not result.batches or result.outage:
                time.sleep(interval)
