"""One entry point for every consumer role:

    python -m consumers transformer      # order.events → orders_analytics
    python -m consumers sink             # orders_analytics → ClickHouse
    python -m consumers migrate          # apply the ClickHouse schema, warehouse/schema.sql (idempotent)
    python -m consumers purge            # remove every version of orders deleted > 7 days ago
    python -m consumers query "SQL"...   # run queries in one process, print tab-separated rows
    python -m consumers dlq list [--topic T] [--records]     # dead letters by reason and partition
    python -m consumers dlq replay [--topic T] [--reason TEXT] [--source-partition N] [--dry-run]

Configuration comes from environment variables (consumers/settings.py, README "Configuration").
SIGTERM/SIGINT stop a consumer after its current step; an unfinished batch is left uncommitted.
The chDB gateway and the SQL shell are ClickHouse's own: `python -m warehouse`.
"""

from __future__ import annotations

import argparse
import logging.config
import sys
import threading

from clickhouse_connect.driver.exceptions import ClickHouseError
from kafka import KafkaConsumer
from kafka.errors import KafkaError

from consumers import dead_letters
from consumers.dead_letters import DeadLetterRunaway
from consumers.kafka_io import make_producer
from consumers.kafka_logging import logging_config
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


def _dead_letters(args: argparse.Namespace, settings: ConsumerSettings) -> None:
    topic = args.topic or settings.order_events_dlq_topic
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    try:
        letters = dead_letters.read_dead_letters(consumer, topic)
    finally:
        consumer.close()
    chosen = dead_letters.select(letters, reason=args.reason, source_partition=args.source_partition)
    if args.dlq_command == "list":
        print(f"{len(chosen)} of {len(letters)} dead letters in {topic}")
        for reason, partition, count in dead_letters.summary(chosen):
            print(f"{count:>8}  partition {partition:<3} {reason}")
        for letter in chosen if args.records else []:
            print(
                f"{letter.partition}@{letter.offset}  from {letter.source_topic}[{letter.source_partition}]"
                f"@{letter.source_offset}  key={letter.key!r}  {letter.reason}"
            )
        return
    if args.dry_run:
        print(f"would replay {len(chosen)} of {len(letters)} dead letters from {topic}")
        return
    producer = make_producer(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="dlq-replay")
    try:
        sent = dead_letters.replay(producer, chosen)
    finally:
        producer.close(timeout=10)
    print(f"replayed {sent} of {len(letters)} dead letters from {topic} to their source topics")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m consumers", description="Run a consumer role.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("transformer", help="order.events → orders_analytics")
    sub.add_parser("sink", help="orders_analytics → ClickHouse")
    sub.add_parser("migrate", help="apply the ClickHouse schema (idempotent)")
    sub.add_parser("purge", help="remove every stored version of orders deleted more than 7 days ago")
    query = sub.add_parser("query", help="run SQL statements in order and print their rows")
    query.add_argument("sql", nargs="+")
    dlq = sub.add_parser("dlq", help="inspect or replay a dead-letter topic")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_commands.add_parser("list", help="count the dead letters by reason and source partition")
    replaying = dlq_commands.add_parser("replay", help="send dead letters back to their source topic")
    for parser_of in (listing, replaying):
        parser_of.add_argument("--topic", help="the dead-letter topic (default: ORDER_EVENTS_DLQ_TOPIC)")
        parser_of.add_argument("--reason", help="only dead letters whose reason contains this text")
        parser_of.add_argument("--source-partition", type=int, help="only those from this partition")
    listing.add_argument("--records", action="store_true", help="list every record, not only counts")
    replaying.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    return parser


def _run(args: argparse.Namespace, settings: ConsumerSettings) -> None:
    if args.command in ("transformer", "sink"):
        _run_consumer(args.command, settings)
    elif args.command == "dlq":
        _dead_letters(args, settings)
    elif args.command == "migrate":
        count = migrate(
            connect(settings.clickhouse_url),
            settings.clickhouse_database,
            fsync_after_insert=settings.clickhouse_fsync_after_insert,
        )
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = ConsumerSettings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(logging_config(brokers=len(settings.kafka_bootstrap_servers)))
    try:
        _run(args, settings)
    except DeadLetterRunaway as exc:
        print(
            f"stopped: {exc}. Nothing past the last commit was committed: fix the cause (or raise the"
            " limit), then start the consumer again, and `python -m consumers dlq list` shows what"
            " was set aside.",
            file=sys.stderr,
        )
        return 3
    except (ValueError, TimeoutError) as exc:
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
