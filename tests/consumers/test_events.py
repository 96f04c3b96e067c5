"""Unit tests of the pure steps: envelope validation, transform, and the analytics row format."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from consumers.events import InvalidEvent, decode_event
from consumers.rows import decode_row, encode_row, transform
from tests.consumers.factories import base_order, envelope, history, kafka_value


def valid_event() -> dict[str, Any]:
    return envelope(base_order(42, user_id=7), "OrderCreated")


def test_a_valid_envelope_becomes_a_full_analytics_row() -> None:
    row = transform(decode_event(kafka_value(valid_event())))
    assert row.order_id == 42
    assert row.user_id == 7
    assert row.user_email == "user7@example.com"
    assert row.version == 1
    assert row.event_type == "OrderCreated"
    assert row.status == "PENDING"
    assert row.total_amount == Decimal("21.00")
    assert row.items_count == 2
    assert row.created_at == datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    assert row.order_date.isoformat() == "2026-11-20"
    assert row.payment_method == "CARD"
    assert row.payment_status == "PENDING"
    assert row.deleted_at is None
    assert row.is_deleted is False
    assert [(i.product_id, i.quantity, i.line_total) for i in row.items] == [(1, 2, Decimal("21.00"))]


def test_a_delete_event_marks_the_row_deleted() -> None:
    deleted_at = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    delete = history(base_order(5), ["PAID"], deleted_at)[-1]
    row = transform(decode_event(kafka_value(delete)))
    assert (row.event_type, row.version, row.status) == ("OrderDeleted", 3, "PAID")
    assert row.is_deleted is True
    assert row.deleted_at == deleted_at


def test_the_analytics_row_survives_its_wire_format() -> None:
    delete = history(base_order(5), ["SHIPPED"], datetime(2026, 11, 21, 8, 0, tzinfo=UTC))[-1]
    row = transform(decode_event(kafka_value(delete)))
    assert decode_row(encode_row(row)) == row


def _broken(path: str, value: Any) -> bytes:
    event = copy.deepcopy(valid_event())
    target = event
    *parents, leaf = path.split(".")
    for name in parents:
        target = target[name]
    if value is ...:
        del target[leaf]
    else:
        target[leaf] = value
    return kafka_value(event)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "record has no value"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "envelope must be a JSON object"),
        (_broken("schema_version", 2), "schema_version must be 1"),
        (_broken("aggregate_type", "user"), "aggregate_type must be 'order'"),
        (_broken("event_type", "OrderShipped"), "event_type must be one of"),
        (_broken("aggregate_version", 0), "aggregate_version must be an integer >= 1"),
        (_broken("aggregate_version", "1"), "aggregate_version must be an integer"),
        (_broken("aggregate_id", "43"), "aggregate_id must equal payload.order_id"),
        (_broken("payload.version", 2), "payload.version must equal aggregate_version"),
        (_broken("payload", ...), "payload is missing"),
        (_broken("payload.status", "LOST"), "payload.status must be one of"),
        (_broken("payload.total_amount", 21.0), "payload.total_amount must be a decimal string"),
        (_broken("payload.total_amount", "abc"), "payload.total_amount must be a decimal string"),
        (_broken("payload.total_amount", "-1.00"), "non-negative"),
        (_broken("payload.created_at", "yesterday"), "payload.created_at must be an ISO-8601 timestamp"),
        (_broken("payload.created_at", "2026-11-20T10:30:00"), "must carry a time zone"),
        (_broken("payload.payment", ...), "payload.payment is missing"),
        (_broken("payload.payment.method", "GOLD"), "payload.payment.method must be one of"),
        (_broken("payload.items", "many"), "payload.items must be a list"),
        (_broken("payload.user_email", ""), "payload.user_email must be a non-empty string"),
        (_broken("event_type", "OrderDeleted"), "OrderDeleted needs payload.deleted_at"),
    ],
)
def test_an_invalid_envelope_is_refused_with_its_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_event(value)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"garbage", "not UTF-8 JSON"),
        (json.dumps({"order_id": 1}).encode(), "schema_version"),
        (b'{"schema_version": 1, "order_id": 1}', "malformed analytics row"),
    ],
)
def test_an_invalid_analytics_row_is_refused_with_its_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_row(value)
    assert reason in refused.value.reason
