"""Unit tests of the pure steps: envelope validation, transform, and the analytics row format."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.transformer import transform
from contract.events import InvalidEvent, decode_envelope
from contract.rows import DETAIL_FIELDS, decode_row, encode_row
from tests.consumers.factories import base_order, envelope, history, kafka_value


def valid_event() -> dict[str, Any]:
    return envelope(base_order(42, user_id=7), "OrderCreated")


def test_a_valid_envelope_becomes_a_full_analytics_row() -> None:
    row = transform(decode_envelope(kafka_value(valid_event())))
    assert row.order_id == 42
    assert row.user_id == 7
    assert row.user_email == "user7@example.com"
    assert row.version == 1
    assert row.event_type == "OrderCreated"
    assert row.status == "PENDING"
    assert row.total_amount == "21.00"
    assert row.items_count == 2
    assert row.created_at == datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    assert row.order_date.isoformat() == "2026-11-20"
    assert row.payment_method == "CARD"
    assert row.payment_status == "PENDING"
    assert row.deleted_at is None
    assert row.is_deleted is False
    assert [(i.product_id, i.quantity, i.line_total) for i in row.items] == [(1, 2, "21.00")]


def test_a_delete_event_becomes_a_delete_row_without_personal_data() -> None:
    deleted_at = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    delete = history(base_order(5, user_id=7), ["PAID"], deleted_at)[-1]
    row = transform(decode_envelope(kafka_value(delete)))
    assert (row.order_id, row.event_type, row.version) == (5, "OrderDeleted", 3)
    assert row.is_deleted is True
    assert row.deleted_at == deleted_at
    assert row.order_date.isoformat() == "2026-11-20"  # the partition of the order's other rows
    assert all(getattr(row, name) is None for name in DETAIL_FIELDS)
    wire = json.loads(encode_row(row))
    assert set(wire) == {
        "schema_version",
        "order_id",
        "order_date",
        "version",
        "event_type",
        "deleted_at",
        "is_deleted",
    }
    assert b"user7@example.com" not in encode_row(row)


def row_document(event: dict[str, Any]) -> dict[str, Any]:
    """The analytics row of an event, as the JSON object the topic carries."""
    return dict(json.loads(encode_row(transform(decode_envelope(kafka_value(event))))))


def test_a_delete_row_with_details_from_an_older_transformer_is_read_without_them() -> None:
    *_, paid, delete = history(base_order(5, user_id=7), ["PAID"], datetime(2026, 11, 21, 8, 0, tzinfo=UTC))
    # What the transformer wrote for a delete before delete rows left the details out.
    old_delete_row = row_document(paid) | {
        "version": 3,
        "event_type": "OrderDeleted",
        "deleted_at": delete["payload"]["deleted_at"],
        "is_deleted": True,
    }
    assert old_delete_row["user_email"] == "user7@example.com" and old_delete_row["items"]

    assert decode_row(json.dumps(old_delete_row).encode()) == transform(decode_envelope(kafka_value(delete)))


def test_a_row_of_an_order_that_is_not_deleted_needs_every_detail() -> None:
    full = row_document(valid_event())
    del full["user_email"], full["items"]
    with pytest.raises(InvalidEvent) as refused:
        decode_row(json.dumps(full).encode())
    assert "a row of an order that is not deleted needs user_email, items" in refused.value.reason


def test_the_analytics_row_survives_its_wire_format() -> None:
    delete = history(base_order(5), ["SHIPPED"], datetime(2026, 11, 21, 8, 0, tzinfo=UTC))[-1]
    row = transform(decode_envelope(kafka_value(delete)))
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
        (b"[1, 2]", "Expected `object`, got `array`"),
        (_broken("schema_version", 2), "Invalid enum value 2 - at `$.schema_version`"),
        (_broken("aggregate_type", "user"), "Invalid enum value 'user' - at `$.aggregate_type`"),
        (_broken("event_type", "OrderShipped"), "Invalid enum value 'OrderShipped' - at `$.event_type`"),
        (_broken("event_id", "evt-1"), "Invalid UUID - at `$.event_id`"),
        (_broken("aggregate_version", 0), "Expected `int` >= 1 - at `$.aggregate_version`"),
        (_broken("aggregate_version", "1"), "Expected `int`, got `str` - at `$.aggregate_version`"),
        (_broken("aggregate_id", "43"), "aggregate_id must equal payload.order_id"),
        (_broken("payload.version", 2), "payload.version must equal aggregate_version"),
        (_broken("payload", ...), "missing required field `payload`"),
        (_broken("payload.status", "LOST"), "Invalid enum value 'LOST' - at `$.payload.status`"),
        (_broken("payload.total_amount", 21.0), "Expected `str`, got `float` - at `$.payload.total_amount`"),
        (_broken("payload.total_amount", "abc"), "at most 16 digits before the point and 2 after"),
        (_broken("payload.total_amount", "-1.00"), "a non-negative decimal string"),
        (
            _broken("payload.created_at", "yesterday"),
            "Invalid RFC3339 encoded datetime - at `$.payload.created_at`",
        ),
        (_broken("payload.created_at", "2026-11-20T10:30:00"), "with a timezone component"),
        (_broken("payload.payment", ...), "missing required field `payment` - at `$.payload`"),
        (
            _broken("payload.payment.method", "GOLD"),
            "Invalid enum value 'GOLD' - at `$.payload.payment.method`",
        ),
        (_broken("payload.items", "many"), "Expected `array`, got `str` - at `$.payload.items`"),
        (_broken("payload.user_email", ""), "Expected `str` of length >= 1 - at `$.payload.user_email`"),
        (_broken("event_type", "OrderDeleted"), "OrderDeleted needs payload.deleted_at"),
    ],
)
def test_an_invalid_envelope_is_refused_with_its_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_envelope(value)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"garbage", "not UTF-8 JSON"),
        (json.dumps({"order_id": 1}).encode(), "schema_version"),
        (b'{"schema_version": 1, "order_id": 1}', "analytics row: Object missing required field"),
    ],
)
def test_an_invalid_analytics_row_is_refused_with_its_reason(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_row(value)
    assert reason in refused.value.reason


# Values the old validators let through and ClickHouse then refused for the whole batch (a Decimal
# too big), stored altered without a word (an integer wrapped to its column's width, a third
# decimal place cut, a date clamped), or that crashed the transformer (a time zone pushing year 1
# out of range): each is refused with the field that breaks its column's range.
@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("payload.total_amount", "1E+30", "$.payload.total_amount"),
        ("payload.total_amount", "1e17", "$.payload.total_amount"),
        ("payload.total_amount", "10000000000000000.00", "$.payload.total_amount"),
        ("payload.total_amount", "1.239", "$.payload.total_amount"),
        ("payload.items_count", 2**40, "Expected `int` <= 4294967295 - at `$.payload.items_count`"),
        (
            "payload.items.0.quantity",
            2**40,
            "Expected `int` <= 4294967295 - at `$.payload.items[0].quantity`",
        ),
        ("payload.items.0.line_total", "0.001", "$.payload.items[0].line_total"),
        ("payload.order_id", 2**64, "$.payload.order_id"),
        ("payload.created_at", "1969-12-31T23:59:59Z", "payload.created_at must lie between 1970-01-01"),
        ("payload.created_at", "2149-06-07T00:00:00Z", "payload.created_at must lie between 1970-01-01"),
        ("payload.created_at", "0001-01-01T00:00:00+01:00", "payload.created_at must lie between 1900"),
        ("occurred_at", "0001-01-01T00:00:00+01:00", "occurred_at must lie between 1900"),
        ("payload.deleted_at", "0001-01-01T00:00:00+01:00", "payload.deleted_at must lie between 1900"),
        ("payload.deleted_at", "9999-12-31T23:00:00-01:00", "payload.deleted_at must lie between 1900"),
    ],
)
def test_a_value_its_clickhouse_column_cannot_hold_is_refused(path: str, value: Any, reason: str) -> None:
    event = copy.deepcopy(valid_event())
    target: Any = event
    *parents, leaf = path.split(".")
    for name in parents:
        target = target[int(name)] if name.isdigit() else target[name]
    target[leaf] = value
    with pytest.raises(InvalidEvent) as refused:
        decode_envelope(kafka_value(event))
    assert reason in refused.value.reason


def test_the_widest_values_the_columns_hold_are_accepted() -> None:
    event = copy.deepcopy(valid_event())
    payload = event["payload"]
    payload["total_amount"] = "9999999999999999.99"
    payload["items_count"] = 2**32 - 1
    payload["created_at"] = "1970-01-01T00:00:00Z"
    row = transform(decode_envelope(kafka_value(event)))
    assert (row.total_amount, row.items_count, row.order_date.isoformat()) == (
        "9999999999999999.99", 2**32 - 1, "1970-01-01"
    )  # fmt: skip


def debezium_form(event: dict[str, Any]) -> dict[str, Any]:
    """The envelope as Debezium's outbox router writes it (kafka-connect/debezium-outbox.json): the
    payload column expanded without its null fields, the envelope's columns beside it, occurred_at
    formatted to milliseconds by Connect's TimestampConverter."""
    payload = {name: value for name, value in event["payload"].items() if value is not None}
    occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    head = {name: value for name, value in event.items() if name != "payload"}
    head["occurred_at"] = occurred.strftime("%Y-%m-%dT%H:%M:%S.") + f"{occurred.microsecond // 1000:03d}Z"
    return {"payload": payload, **head}


@pytest.mark.parametrize("step", [0, 1, 2], ids=["created", "status changed", "deleted"])
def test_debeziums_envelope_becomes_the_same_analytics_row_as_ours(step: int) -> None:
    events = history(base_order(9, user_id=3), ["PAID"], datetime(2026, 11, 21, 8, 0, tzinfo=UTC))
    ours = transform(decode_envelope(kafka_value(events[step])))
    theirs = transform(decode_envelope(json.dumps(debezium_form(events[step])).encode()))
    assert "deleted_at" not in debezium_form(events[0])["payload"]
    assert theirs == ours


def test_an_envelope_without_a_payload_field_that_is_not_nullable_is_still_refused() -> None:
    event = valid_event()
    del event["payload"]["updated_at"]
    with pytest.raises(InvalidEvent, match="updated_at"):
        decode_envelope(kafka_value(event))
