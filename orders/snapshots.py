"""The order snapshot: the one representation of an order that every outbox event carries as its
payload and the API returns (docs/events.md, schema_version 1)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orders.models import Order


def utc_iso(moment: datetime | None) -> str | None:
    """UTC ISO-8601 with microseconds and a 'Z' suffix, as the event contract requires."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def order_snapshot(order: Order) -> dict[str, Any]:
    """The full state of ``order`` as it is now. Reads ``order.items`` and ``order.payment``
    through Django's caches, so selectors can prefetch them for a whole page of orders."""
    items = list(order.items.all())
    payment = order.payment
    return {
        "order_id": order.pk,
        "version": order.version,
        "user_id": order.user_id,
        "user_email": order.user.email,
        "status": order.status,
        "total_amount": money(order.total_amount),
        "currency": order.currency,
        "items_count": sum(item.quantity for item in items),
        "items": [
            {
                "product_id": item.product_id,
                "sku": item.sku,
                "product_name": item.product_name,
                "quantity": item.quantity,
                "unit_price": money(item.unit_price),
                "line_total": money(item.line_total),
            }
            for item in items
        ],
        "payment": {"method": payment.method, "status": payment.status, "amount": money(payment.amount)},
        "created_at": utc_iso(order.created_at),
        "updated_at": utc_iso(order.updated_at),
        "deleted_at": utc_iso(order.deleted_at),
        "deleted_by": order.deleted_by,
    }
