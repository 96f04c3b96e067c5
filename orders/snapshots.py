"""The order snapshot: the one representation of an order that every outbox event carries as its
payload and the API returns (contract.events.OrderSnapshot, docs/events.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from contract.events import OrderItem, OrderSnapshot, Payment, snapshot_document
from contract.types import OrderStatus, PaymentMethod, PaymentStatus
from orders.models import Order


def money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def order_snapshot(order: Order) -> dict[str, Any]:
    """The full state of ``order`` as it is now. Reads ``order.items`` and ``order.payment``
    through Django's caches, so selectors can prefetch them for a whole page of orders."""
    items = list(order.items.all())
    payment = order.payment
    snapshot = OrderSnapshot(
        order_id=order.pk,
        version=order.version,
        user_id=order.user_id,
        user_email=order.user.email,
        status=OrderStatus(order.status),
        total_amount=money(order.total_amount),
        currency=order.currency,
        items_count=sum(item.quantity for item in items),
        items=[
            OrderItem(
                product_id=item.product_id,
                sku=item.sku,
                product_name=item.product_name,
                quantity=item.quantity,
                unit_price=money(item.unit_price),
                line_total=money(item.line_total),
            )
            for item in items
        ],
        payment=Payment(
            method=PaymentMethod(payment.method),
            status=PaymentStatus(payment.status),
            amount=money(payment.amount),
        ),
        created_at=order.created_at,
        updated_at=order.updated_at,
        deleted_at=order.deleted_at,
        deleted_by=order.deleted_by,
    )
    return snapshot_document(snapshot)
