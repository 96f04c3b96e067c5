"""Which order status may follow which, and what a transition does to stock and payment.

    PENDING ──► PAID ──► SHIPPED ──► DELIVERED
       │          │                      │
       ▼          ▼                      ▼
   CANCELLED   REFUNDED              REFUNDED

CANCELLED and REFUNDED are final. Stock goes back to inventory when goods never left the shop:
on PENDING → CANCELLED and on PAID → REFUNDED; a refund after delivery does not restock.
"""

from __future__ import annotations

from orders.models import OrderStatus, PaymentStatus

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.SHIPPED, OrderStatus.REFUNDED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset({OrderStatus.REFUNDED}),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REFUNDED: frozenset(),
}

# The payment follows the order: paying completes it, cancelling or refunding closes it.
PAYMENT_STATUS_AFTER: dict[str, str] = {
    OrderStatus.PAID: PaymentStatus.COMPLETED,
    OrderStatus.CANCELLED: PaymentStatus.CANCELLED,
    OrderStatus.REFUNDED: PaymentStatus.REFUNDED,
}


def can_transition(current: str, target: str) -> bool:
    return target in ALLOWED_TRANSITIONS.get(current, frozenset())


def returns_stock(current: str, target: str) -> bool:
    return (current, target) in {
        (OrderStatus.PENDING, OrderStatus.CANCELLED),
        (OrderStatus.PAID, OrderStatus.REFUNDED),
    }
