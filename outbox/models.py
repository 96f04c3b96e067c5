"""The transactional outbox: one row per domain event, written in the same database transaction as
the change it describes, and relayed to Kafka afterwards.

Delivery state lives on the row (Saleor-style): status, attempts, the last error, when the next
attempt may run, the lease of the relay that holds it, and when it was published.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Lookup


class TextUUIDField(models.UUIDField):
    """A UUID stored as its canonical text (36 ASCII characters), the form it has on Kafka.

    Django stores a UUIDField in MariaDB 10.7+'s native `uuid` type and in MySQL as 32 hex digits.
    Change data capture reads the column as it is stored: Debezium's MySQL parser (2.x) knows no
    `uuid` type and fails on the table, and 32 hex digits would not be the envelope's event_id.
    As text, both relays publish the same event_id. Python still sees a uuid.UUID."""

    def db_type(self, connection: Any) -> str:
        if connection.vendor == "mysql":
            return "char(36) CHARACTER SET ascii COLLATE ascii_bin"
        return "char(36)"

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> str | None:
        value = self.to_python(value)
        return None if value is None else str(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> uuid.UUID | None:
        return None if value is None else self.to_python(value)


# Every aggregate's first event has this version, and each change adds one (docs/events.md).
FIRST_VERSION = 1


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PUBLISHED = "published", "Published"
    # Parked after exhausting its retries: never dropped, retryable from Django admin.
    FAILED = "failed", "Failed (parked)"


class OutboxEvent(models.Model):
    # --- the event envelope (see docs/events.md) ---
    event_id = TextUUIDField(default=uuid.uuid4, unique=True, editable=False)
    event_type = models.CharField(max_length=64)
    aggregate_type = models.CharField(max_length=32)
    aggregate_id = models.CharField(max_length=64)
    aggregate_version = models.PositiveBigIntegerField()
    schema_version = models.PositiveSmallIntegerField(default=1)
    occurred_at = models.DateTimeField()
    payload = models.JSONField()

    # --- delivery state ---
    status = models.CharField(max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=64, blank=True, default="")
    locked_until = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "outbox"
        ordering = ["id"]
        constraints = [
            # One event per aggregate version: the version is the ordering key downstream.
            models.UniqueConstraint(
                fields=["aggregate_type", "aggregate_id", "aggregate_version"],
                name="outbox_unique_aggregate_version",
            ),
        ]
        indexes = [
            # The relay's scan: pending rows in id order.
            models.Index(fields=["status", "id"], name="outbox_status_id"),
            # The freshness watermark: the oldest unpublished event's commit time, per status.
            models.Index(fields=["status", "occurred_at"], name="outbox_status_occurred"),
            # Retention purge: published rows by age.
            models.Index(fields=["status", "published_at"], name="outbox_status_published"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.aggregate_type}:{self.aggregate_id} v{self.aggregate_version}"

    @property
    def payload_json(self) -> str:
        """The payload as compact JSON text, as it goes into the Kafka record."""
        return json.dumps(self.payload, cls=DjangoJSONEncoder, separators=(",", ":"))


class InIds(Lookup):
    """``pk__in_ids=[...]``: IN with the ids written into the statement as integers. The relay
    leases and marks thousands of rows by id per batch, and the ORM's ``in`` prepares and binds
    every value one by one, which took as long as MariaDB took to run the UPDATE (5,000 ids: 30 ms
    against 15 ms as plain SQL). Only for non-empty lists of ints."""

    lookup_name = "in_ids"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, params = self.process_lhs(compiler, connection)
        if not self.rhs:
            raise ValueError("in_ids needs at least one id")
        return f"{lhs} IN ({','.join(str(int(pk)) for pk in self.rhs)})", list(params)


OutboxEvent._meta.get_field("id").register_lookup(InIds)
