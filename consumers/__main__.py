"""One entry point for every consumer role:

    python -m consumers transformer      # order.events → orders_analytics
    python -m consumers sink             # orders_analytics → ClickHouse
    python -m consumers migrate          # apply the ClickHouse schema, warehouse/schema.sql (idempotent)
    python -m consumers purge            # remove every version of orders deleted > 7 days ago
    python -m consumers query "SQL"...   # run queries in one process, print tab-separated rows

Configuration comes from environment variables (consumers/settings.py, README "Configuration").
SIGTERM/SIGINT stop a consumer after its current step; an unfinished batch is left uncommitted.
The chDB gateway and the SQL shell are ClickHouse's own: `python -m warehouse`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from clickhouse_connect.driver.exceptions import ClickHouseError
from kafka.errors import KafkaError

from consumers.runner import stop_on_signals
from consumers.settings import ConsumerSettings, SettingsError
from warehouse.client import connect, query_rows
from warehouse.schema import migrate


def _run_consumer(role: str, settings: ConsumerSettings) -> None:
    from consumers.sink import build_sink
    from consumers.transformer import build_transformer

    stop_event = threading.Event()
    stop_on_signals(stop_event)
    build = build_transformer if role == "transformer" else build_sink
    loop, consumer, producer = build(settings, stop_event=stop_event)
    logging.getLogger("consumers").info("%s started", role)
    try:
        loop.run()
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)
        logging.getLogger("consumers").info("%s stopped", role)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consumers", description="Run a consumer role.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("transformer", help="order.events → orders_analytics")
    sub.add_parser("sink", help="orders_analytics → ClickHouse")
    sub.add_parser("migrate", help="apply the ClickHouse schema (idempotent)")
    sub.add_parser("purge", help="remove every stored version of orders deleted more than 7 days ago")
    query = sub.add_parser("query", help="run SQL statements in order and print their rows")
    query.add_argument("sql", nargs="+")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        settings = ConsumerSettings.from_env()
        if args.command in ("transformer", "sink"):
            _run_consumer(args.command, settings)
        elif args.command == "migrate":
            count = migrate(connect(settings.clickhouse_url), settings.clickhouse_database)
            print(f"applied {count} statements to {settings.clickhouse_database}")
        elif args.command == "purge":
            from consumers.sink import purge_expired_orders

            purge_expired_orders(connect(settings.clickhouse_url), settings.clickhouse_database)
            print(f"purged orders deleted more than 7 days ago from {settings.clickhouse_database}")
        else:
            client = connect(settings.clickhouse_url)
            for sql in args.sql:
                for row in query_rows(client, sql):
                    print("\t".join(str(value) for value in row))
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ClickHouseError as exc:
        print(f"ClickHouse error: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        servers = ",".join(settings.kafka_bootstrap_servers)
        print(f"Kafka error (KAFKA_BOOTSTRAP_SERVERS={servers}): {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
