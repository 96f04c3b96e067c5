"""Provision the pipeline's Kafka topics (idempotent): order.events, orders_analytics and their
dead-letter topics, with replication and min.insync.replicas adapted to the cluster size."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from kafka import KafkaAdminClient

from outbox.topics import cluster_brokers, topic_specs, topics_ensure


class Command(BaseCommand):
    help = "Create or update the pipeline's Kafka topics (partitions, replication, min ISR, configs)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--partitions",
            type=int,
            default=None,
            help="partitions per topic (default: KAFKA_TOPIC_PARTITIONS, %(default)s means that)",
        )
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for Kafka")

    def handle(self, *args: Any, **options: Any) -> None:
        partitions = options["partitions"]
        if partitions is not None and partitions < 1:
            raise CommandError(f"--partitions must be at least 1, got {partitions}")
        servers = ",".join(settings.KAFKA_BOOTSTRAP_SERVERS)
        timeout_ms = int(options["timeout"] * 1000)
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
                client_id="kafka-topics",
                request_timeout_ms=timeout_ms,
            )
        except Exception as exc:
            raise CommandError(f"Kafka is not reachable at {servers}: {exc}") from exc
        try:
            brokers = cluster_brokers(admin)
            specs = topic_specs(brokers=brokers, partitions=partitions)
            outcomes = topics_ensure(admin, specs)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            admin.close()
        self.stdout.write(f"{brokers} broker(s) at {servers}")
        for spec, outcome in zip(specs, outcomes, strict=True):
            configs = ",".join(f"{k}={v}" for k, v in sorted(spec.configs.items()))
            extra = f" ({'; '.join(outcome.details)})" if outcome.details else ""
            self.stdout.write(
                f"{outcome.action:9} {spec.name}: partitions={spec.partitions} "
                f"replication={spec.replication_factor} {configs}{extra}"
            )
