"""Checks the incremental views, and rebuilds them (README, "Analytics schema"):

    python manage.py analytics_reconcile                      # *_mv against *_live and MySQL
    python manage.py analytics_reconcile --rebuild            # every cell again from orders_analytics
    python manage.py analytics_reconcile --rebuild --from 2026-11-01 --to 2026-11-30   # those days' cells

Prints every difference and exits 1 when there is any. A rebuild runs while the pipeline does (the
sink waits for it, then goes on in the rebuilt state); the comparison follows it."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.reconcile import reconcile
from consumers.views import ViewStateError, rebuild
from warehouse.client import connect


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"not a date (YYYY-MM-DD): {text!r}") from exc


class Command(BaseCommand):
    help = "Compare the incremental views with orders_analytics and MySQL; rebuild them on demand."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=settings.CLICKHOUSE_DATABASE, help="ClickHouse database")
        parser.add_argument("--url", default=settings.CLICKHOUSE_URL, help="http(s)://… or chdb:///dir")
        parser.add_argument("--rebuild", action="store_true", help="rebuild the views' state first")
        parser.add_argument("--from", dest="first", type=_day, help="with --rebuild: first day (UTC)")
        parser.add_argument("--to", dest="last", type=_day, help="with --rebuild: last day (UTC)")
        parser.add_argument(
            "--partitions", type=int, default=None,
            help="partitions of the analytics topic (default: ask Kafka)",
        )  # fmt: skip
        parser.add_argument("--no-mysql", action="store_true", help="compare with the live views only")
        parser.add_argument(
            "--settle", type=float, default=10.0,
            help="seconds to wait for orders still on their way before reporting a difference",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        first, last = _days(options)
        try:
            client = connect(options["url"])
        except Exception as exc:
            raise CommandError(f"ClickHouse is not reachable at {options['url']}: {exc}") from exc
        database = options["database"]
        if options["rebuild"]:
            partitions = options["partitions"] or _topic_partitions()
            try:
                epoch = rebuild(client, database, partitions, (first, last) if first and last else None)
            except (ValueError, ViewStateError) as exc:
                raise CommandError(str(exc)) from exc
            if first:
                what = f"the days {first} to {last} from the counted orders"
            else:
                what = "every view from orders_analytics"
            self.stdout.write(f"rebuilt {what} as epoch {epoch}")
        report = reconcile(client, database, settle=options["settle"], with_mysql=not options["no_mysql"])
        for line in report.live:
            self.stdout.write(f"live: {line}")
        for line in report.mysql:
            self.stdout.write(f"mysql: {line}")
        if not report.clean:
            raise CommandError(f"{len(report.live) + len(report.mysql)} differences in {database}'s views")
        checked = "their live views" + ("" if options["no_mysql"] else " and MySQL")
        self.stdout.write(self.style.SUCCESS(f"every view of {database} matches {checked}"))


def _days(options: dict[str, Any]) -> tuple[date | None, date | None]:
    first, last = options["first"], options["last"]
    if (first or last) and not options["rebuild"]:
        raise CommandError("--from and --to choose the days of a rebuild: add --rebuild")
    if (first is None) != (last is None):
        raise CommandError("give both --from and --to, or neither")
    if first and last and first > last:
        raise CommandError(f"--from {first} is after --to {last}")
    return first, last


def _topic_partitions() -> int:
    from kafka import KafkaConsumer

    from consumers.settings import ConsumerSettings

    consumer_settings = ConsumerSettings.from_env()
    consumer = KafkaConsumer(bootstrap_servers=consumer_settings.kafka_bootstrap_servers)
    try:
        found = consumer.partitions_for_topic(consumer_settings.analytics_topic)
    finally:
        consumer.close()
    if not found:
        raise CommandError(
            f"Kafka knows no partitions of {consumer_settings.analytics_topic}: pass --partitions"
        )
    return len(found)
