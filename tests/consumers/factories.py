"""Order histories as the relay would publish them, and the ground truth the analytics views must
equal: computed from the final state of each order with the views' own rules (docs in README)."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

NOT_REVENUE = {"CANCELLED", "REFUNDED"}
VIEWS = ("daily_sales", "hourly_sales", "order_status", "user_analytics", "top_products")


@dataclass(frozen=True)
class Item:
    product_id: int
    quantity: int
    unit_price: Decimal

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class OrderState:
    order_id: int
    version: int
    user_id: int
    status: str
    created_at: datetime
    items: tuple[Item, ...]
    payment_method: str = "CARD"
    payment_status: str = "PENDING"
    deleted_at: datetime | None = None

    @property
    def total_amount(self) -> Decimal:
        return sum((item.line_total for item in self.items), Decimal("0.00"))

    @property
    def items_count(self) -> int:
        return sum(item.quantity for item in self.items)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def envelope(state: OrderState, event_type: str) -> dict[str, Any]:
    """The envelope of docs/events.md for the order's state after the change."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "aggregate_type": "order",
        "aggregate_id": str(state.order_id),
        "aggregate_version": state.version,
        "occurred_at": iso(state.created_at + timedelta(minutes=state.version)),
        "schema_version": 1,
        "payload": {
            "order_id": state.order_id,
            "version": state.version,
            "user_id": state.user_id,
            "user_email": f"user{state.user_id}@example.com",
            "status": state.status,
            "total_amount": f"{state.total_amount:.2f}",
            "currency": "USD",
            "items_count": state.items_count,
            "items": [
                {
                    "product_id": item.product_id,
                    "sku": f"SKU-{item.product_id:04d}",
                    "product_name": f"Product {item.product_id}",
                    "quantity": item.quantity,
                    "unit_price": f"{item.unit_price:.2f}",
                    "line_total": f"{item.line_total:.2f}",
                }
                for item in state.items
            ],
            "payment": {"method": state.payment_method, "status": state.payment_status, "amount": "0.00"},
            "created_at": iso(state.created_at),
            "updated_at": iso(state.created_at + timedelta(minutes=state.version)),
            "deleted_at": None if state.deleted_at is None else iso(state.deleted_at),
            "deleted_by": None if state.deleted_at is None else 1,
        },
    }


def history(created: OrderState, statuses: list[str], deleted_at: datetime | None) -> list[dict[str, Any]]:
    """OrderCreated, one OrderStatusChanged per status, then OrderDeleted if deleted_at is set."""
    events = [envelope(created, "OrderCreated")]
    state = created
    for status in statuses:
        state = replace(state, version=state.version + 1, status=status)
        events.append(envelope(state, "OrderStatusChanged"))
    if deleted_at is not None:
        state = replace(state, version=state.version + 1, deleted_at=deleted_at)
        events.append(envelope(state, "OrderDeleted"))
    return events


def kafka_value(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def kafka_headers(event: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [
        ("event_id", event["event_id"].encode()),
        ("event_type", event["event_type"].encode()),
        ("schema_version", b"1"),
    ]


# --- ground truth ----------------------------------------------------------------------------------


def final_payloads(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest snapshot of every order that is not deleted."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        current = latest.get(event["aggregate_id"])
        if current is None or event["aggregate_version"] > current["aggregate_version"]:
            latest[event["aggregate_id"]] = event
    return [e["payload"] for e in latest.values() if e["payload"]["deleted_at"] is None]


def _created(payload: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(payload["created_at"].replace("Z", "+00:00")).replace(tzinfo=None)


def expected_views(events: list[dict[str, Any]]) -> dict[str, dict[Any, tuple[Any, ...]]]:
    active = final_payloads(events)
    paying = [p for p in active if p["status"] not in NOT_REVENUE]

    def sales(key_of: Any, with_customers: bool) -> dict[Any, tuple[Any, ...]]:
        groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for p in paying:
            groups[key_of(p)].append(p)
        result = {}
        for key, orders in groups.items():
            row: tuple[Any, ...] = (
                len(orders),
                sum(Decimal(p["total_amount"]) for p in orders),
                sum(p["items_count"] for p in orders),
            )
            if with_customers:
                row += (len({p["user_id"] for p in orders}),)
            result[key] = row
        return result

    statuses: dict[str, list[dict[str, Any]]] = defaultdict(list)
    users: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for p in active:
        statuses[p["status"]].append(p)
        users[p["user_id"]].append(p)
    products: dict[int, list[tuple[int, int, Decimal]]] = defaultdict(list)
    for p in paying:
        for item in p["items"]:
            products[item["product_id"]].append(
                (p["order_id"], item["quantity"], Decimal(item["line_total"]))
            )

    return {
        "daily_sales": sales(lambda p: _created(p).date(), with_customers=True),
        "hourly_sales": sales(lambda p: _created(p).replace(minute=0, second=0, microsecond=0), False),
        "order_status": {
            status: (len(orders), sum(Decimal(p["total_amount"]) for p in orders))
            for status, orders in statuses.items()
        },
        "user_analytics": {
            user_id: (
                max(orders, key=lambda p: (_created(p), p["order_id"]))["user_email"],
                len(orders),
                sum(1 for p in orders if p["status"] not in NOT_REVENUE),
                sum(
                    (Decimal(p["total_amount"]) for p in orders if p["status"] not in NOT_REVENUE), Decimal(0)
                ),
                min(_created(p) for p in orders),
                max(_created(p) for p in orders),
            )
            for user_id, orders in users.items()
        },
        "top_products": {
            product_id: (
                sum(q for _, q, _ in lines),
                sum(t for _, _, t in lines),
                len({o for o, _, _ in lines}),
            )
            for product_id, lines in products.items()
        },
    }


# --- what ClickHouse says ------------------------------------------------------------------------------

VIEW_QUERIES = {
    "daily_sales": "SELECT order_date, orders_count, revenue, items_sold, unique_customers FROM {db}.{view}",
    "hourly_sales": "SELECT hour, orders_count, revenue, items_sold FROM {db}.{view}",
    "order_status": "SELECT status, orders_count, total_amount FROM {db}.{view}",
    "user_analytics": (
        "SELECT user_id, user_email, orders_count, paying_orders_count, total_spent, first_order_at, "
        "last_order_at FROM {db}.{view}"
    ),
    "top_products": "SELECT product_id, units_sold, revenue, orders_count FROM {db}.{view}",
}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, date | datetime | Decimal | str):
        return value
    return int(value)


def actual_views(client: Any, database: str, suffix: str) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """Every view's rows keyed by their group; suffix "_live" or "_mv"."""
    result = {}
    for view, sql in VIEW_QUERIES.items():
        rows = client.query(sql.format(db=database, view=view + suffix)).result_rows
        result[view] = {_plain(row[0]): tuple(_plain(v) for v in row[1:]) for row in rows}
    return result


def base_order(order_id: int, *, user_id: int = 1, created_at: datetime | None = None) -> OrderState:
    return OrderState(
        order_id=order_id,
        version=1,
        user_id=user_id,
        status="PENDING",
        created_at=created_at or datetime(2026, 11, 20, 10, 30, tzinfo=UTC),
        items=(Item(product_id=1 + order_id % 3, quantity=2, unit_price=Decimal("10.50")),),
    )
