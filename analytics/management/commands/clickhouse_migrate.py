"""Applies the ClickHouse schema (warehouse/schema.sql) idempotently, through the same code
the consumers use: `python manage.py clickhouse_migrate [--database NAME]`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from warehouse.client import connect
from warehouse.schema import migrate


class Command(BaseCommand):
    help = "Create or update the ClickHouse analytics schema (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=settings.CLICKHOUSE_DATABASE, help="ClickHouse database")
        parser.add_argument("--url", default=settings.CLICKHOUSE_URL, help="http(s)://… or chdb:///dir")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = migrate(
                connect(options["url"]),
                options["database"],
                fsync_after_insert=settings.CLICKHOUSE_FSYNC_AFTER_INSERT,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"applied {count} statements to {options['database']}"))
