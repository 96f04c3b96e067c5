"""The contract is written once: docs/events.md, the ClickHouse DDL and the typed models must say
the same. Adding a field in one place and not the others fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from contract.events import Envelope, OrderItem, OrderSnapshot, Payment
from contract.rows import DETAIL_FIELDS, ORDER_COLUMNS, AnalyticsRow
from contract.types import EventType, OrderStatus, PaymentMethod, PaymentStatus
from warehouse.schema import migrate

DOC = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()


def doc_json_blocks() -> list[Any]:
    """Every ```json block of the page, with its // comments and `{ … }` placeholders removed."""
    blocks = re.findall(r"```json\n(.*?)```", DOC, flags=re.S)
    parsed = []
    for block in blocks:
        text = re.sub(r"//[^\n]*", "", block).replace("{ … }", "{}")
        parsed.append(orjson.loads(text))
    return parsed


def fields(struct: type[msgspec.Struct]) -> set[str]:
    return set(struct.__struct_fields__)


def test_the_documented_envelope_snapshot_and_rows_have_exactly_the_models_fields() -> None:
    envelope, payload, row, delete_row = doc_json_blocks()
    assert set(envelope) == fields(Envelope)
    assert set(payload) == fields(OrderSnapshot)
    assert set(payload["items"][0]) == fields(OrderItem)
    assert set(payload["payment"]) == fields(Payment)
    assert set(row) == fields(AnalyticsRow)
    assert set(row["items"][0]) == fields(OrderItem)
    assert set(delete_row) == fields(AnalyticsRow) - set(DETAIL_FIELDS)


def test_the_documented_examples_are_valid_under_the_models() -> None:
    _, payload, row, delete_row = doc_json_blocks()
    snapshot = msgspec.convert(payload, OrderSnapshot)
    assert snapshot.status == payload["status"]
    analytics = msgspec.convert(row, AnalyticsRow)
    assert analytics.version == row["version"]
    deleted = msgspec.convert(delete_row, AnalyticsRow)
    assert deleted.is_deleted and deleted.user_email is None and deleted.items is None


@pytest.mark.parametrize(
    ("label", "enum"),
    [
        ("event_type", EventType),
        ("status", OrderStatus),
    ],
)
def test_the_documented_choices_are_the_models_enums(label: str, enum: Any) -> None:
    # `"status": "PAID",   // PENDING | PAID | ...` in the envelope and snapshot examples.
    match = re.search(rf'"{label}": "[A-Za-z]+",\s*//\s*([A-Za-z_ |]+)', DOC)
    assert match, f"docs/events.md lists no choices for {label}"
    assert {choice.strip() for choice in match.group(1).split("|")} == {member.value for member in enum}


def test_the_documented_payment_choices_are_the_models_enums() -> None:
    methods = re.search(r"Payment methods: (.*?)\. Payment statuses: (.*?)\.", DOC, flags=re.S)
    assert methods, "docs/events.md lists no payment methods and statuses"
    documented = [set(re.findall(r"`([A-Z_]+)`", group)) for group in methods.groups()]
    assert documented == [{m.value for m in PaymentMethod}, {s.value for s in PaymentStatus}]


def test_the_clickhouse_table_has_exactly_the_rows_columns(
    clickhouse_client: Any, clickhouse_database: str
) -> None:
    migrate(clickhouse_client, clickhouse_database)
    result = clickhouse_client.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'orders_analytics' "
        "ORDER BY position",
        parameters={"db": clickhouse_database},
    )
    assert tuple(row[0] for row in result.result_rows) == ORDER_COLUMNS
