"""Writes of the orders app. Each service that changes an order writes the order's outbox event in
the same ``transaction.atomic`` block, so the change and its event commit together or not at all.
Every event's payload is the full order snapshot after the change, and its aggregate_version is
the order's version."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from backend.errors import Conflict, InvalidInput, NotFound
from contract.types import EventType
from orders.models import (
    AdminApiToken,
    Customer,
    Inventory,
    Order,
    OrderItem,
    OrderStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Product,
)
from orders.snapshots import order_snapshot
from orders.state_machine import PAYMENT_STATUS_AFTER, can_transition, returns_stock
from outbox.services import outbox_event_create

ORDER_AGGREGATE = "order"

CENT = Decimal("0.01")


@dataclass(frozen=True)
class OrderLine:
    product_id: int
    quantity: int


# --- customers and products ---------------------------------------------------------------------


def customer_create(*, email: str, name: str = "") -> Customer:
    email = email.strip().lower()
    try:
        validate_email(email)
    except DjangoValidationError as exc:
        raise InvalidInput("not a valid email address", field="email") from exc
    try:
        with transaction.atomic():
            return Customer.objects.create(email=email, name=name.strip())
    except IntegrityError as exc:
        raise Conflict("a customer with this email already exists", field="email") from exc


def product_create(*, sku: str, name: str, price: Decimal, stock: int = 0, is_active: bool = True) -> Product:
    if price <= 0:
        raise InvalidInput("price must be greater than 0", field="price")
    if stock < 0:
        raise InvalidInput("stock must not be negative", field="stock")
    try:
        with transaction.atomic():
            product = Product.objects.create(
                sku=sku.strip(), name=name.strip(), price=price, is_active=is_active
            )
            Inventory.objects.create(product=product, quantity=stock)
    except IntegrityError as exc:
        raise Conflict("a product with this sku already exists", field="sku") from exc
    return product


# --- orders -------------------------------------------------------------------------------------


def _write_event(*, order: Order, event_type: EventType) -> None:
    outbox_event_create(
        event_type=event_type,
        aggregate_type=ORDER_AGGREGATE,
        aggregate_id=order.pk,
        aggregate_version=order.version,
        payload=order_snapshot(order),
    )


def _locked_inventory(product_ids: Iterable[int]) -> dict[int, Inventory]:
    # Locks in ascending product id order: two orders that share products always take the row
    # locks in the same order, so they queue behind each other instead of deadlocking.
    rows = (
        Inventory.objects.select_for_update()
        .filter(product_id__in=sorted(set(product_ids)))
        .order_by("product_id")
    )
    return {row.product_id: row for row in rows}


def _locked_products_with_stock(product_ids: Iterable[int]) -> dict[int, Product]:
    """The products with their inventory rows, in one locking read. MariaDB's FOR UPDATE locks the
    joined inventory rows along with the products, one product after the other in ascending id
    order (the LEFT JOIN is driven by the products' primary key): the same order as
    ``_locked_inventory``, so orders and stock returns never deadlock. The prices read are held
    until the order commits."""
    rows = (
        Product.objects.select_for_update()
        .select_related("inventory")
        .filter(pk__in=sorted(set(product_ids)))
        .order_by("pk")
    )
    return {product.pk: product for product in rows}


def _validate_lines(lines: list[OrderLine]) -> None:
    if not lines:
        raise InvalidInput("an order needs at least one item", field="items")
    seen: set[int] = set()
    for index, line in enumerate(lines):
        if line.quantity <= 0:
            raise InvalidInput("quantity must be at least 1", field=f"items.{index}.quantity")
        if line.product_id in seen:
            raise InvalidInput(
                "each product may appear only once per order", field=f"items.{index}.product_id"
            )
        seen.add(line.product_id)


def order_create(*, user_id: int, lines: list[OrderLine], payment_method: str) -> Order:
    """Creates a PENDING order: validates the customer and products, reserves stock, prices the
    lines from the catalogue (a client never sends prices or totals), records the payment and
    writes ``OrderCreated``."""
    _validate_lines(lines)
    if payment_method not in set(PaymentMethod):
        raise InvalidInput(f"unknown payment method {payment_method!r}", field="payment_method")

    with transaction.atomic():
        user = Customer.objects.filter(pk=user_id).first()
        if user is None:
            raise NotFound(f"customer {user_id} does not exist", field="user_id")

        products = _locked_products_with_stock(line.product_id for line in lines)
        for index, line in enumerate(lines):
            product = products.get(line.product_id)
            if product is None:
                raise NotFound(f"product {line.product_id} does not exist", field=f"items.{index}.product_id")
            if not product.is_active:
                raise Conflict(
                    f"product {line.product_id} is not for sale", field=f"items.{index}.product_id"
                )

        stock = {pk: product.inventory for pk, product in products.items() if hasattr(product, "inventory")}
        for index, line in enumerate(lines):
            available = stock[line.product_id].quantity if line.product_id in stock else 0
            if available < line.quantity:
                raise Conflict(
                    f"insufficient stock for product {line.product_id}: {available} available, "
                    f"{line.quantity} requested",
                    code="insufficient_stock",
                    field=f"items.{index}.quantity",
                    details={
                        "product_id": line.product_id,
                        "available": available,
                        "requested": line.quantity,
                    },
                )
        _stock_adjust(stock, {line.product_id: -line.quantity for line in lines})

        priced = [(products[line.product_id], line.quantity) for line in lines]
        total = sum((product.price * quantity for product, quantity in priced), Decimal("0")).quantize(CENT)
        order = Order.objects.create(user=user, status=OrderStatus.PENDING, total_amount=total, version=1)
        items = OrderItem.objects.bulk_create(
            [
                OrderItem(
                    order=order,
                    product=product,
                    sku=product.sku,
                    product_name=product.name,
                    quantity=quantity,
                    unit_price=product.price,
                    line_total=(product.price * quantity).quantize(CENT),
                )
                for product, quantity in priced
            ]
        )
        _cache_items(order, items)
        # Creating the payment with order=order also fills order.payment's cache, as create(user=
        # user) filled order.user's: the snapshot below reads nothing back from the database.
        Payment.objects.create(order=order, method=payment_method, status=PaymentStatus.PENDING, amount=total)
        _write_event(order=order, event_type=EventType.ORDER_CREATED)
    return order


def _stock_adjust(stock: dict[int, Inventory], changes: dict[int, int]) -> None:
    """Adds ``changes`` (product id -> signed quantity) to the locked ``stock`` rows in one UPDATE,
    however many lines the order has."""
    now = timezone.now()
    rows = []
    for product_id, change in changes.items():
        row = stock[product_id]
        row.quantity += change
        row.updated_at = now  # bulk_update skips auto_now fields
        rows.append(row)
    Inventory.objects.bulk_update(rows, ["quantity", "updated_at"])


def _cache_items(order: Order, items: list[OrderItem]) -> None:
    # What prefetch_related("items") leaves behind, filled from the rows just inserted (in the
    # order they were added, with their ids): order.items.all() then costs no query, for the
    # event's snapshot and for the caller's response alike.
    cached = order.items.all()
    cached._result_cache = items
    cached._prefetch_done = True  # type: ignore[attr-defined]  # Django's own prefetch state
    order._prefetched_objects_cache = {"items": cached}  # type: ignore[attr-defined]


def _locked_order(order_id: int) -> Order:
    # No select_related: MariaDB would lock the joined customer row too, serializing unrelated
    # changes to other orders of the same customer.
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        raise NotFound(f"order {order_id} does not exist", field="order_id")
    return order


def _return_stock(order: Order) -> None:
    quantities: dict[int, int] = {}
    for item in order.items.all():
        quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
    stock = _locked_inventory(quantities)
    # Stock goes back to the rows that exist; a missing inventory row is not recreated.
    _stock_adjust(stock, {product_id: n for product_id, n in quantities.items() if product_id in stock})


def order_status_change(*, order_id: int, status: str) -> Order:
    """Moves an order along the state machine in ``orders.state_machine`` and writes
    ``OrderStatusChanged``. A deleted order, or a transition the machine forbids, is a conflict."""
    if status not in set(OrderStatus):
        raise InvalidInput(f"unknown status {status!r}", field="status")
    with transaction.atomic():
        order = _locked_order(order_id)
        if order.is_deleted:
            raise Conflict(f"order {order_id} is deleted and cannot change status", code="order_deleted")
        if not can_transition(order.status, status):
            raise Conflict(
                f"cannot change status from {order.status} to {status}",
                code="invalid_transition",
                field="status",
                details={"from": order.status, "to": status},
            )
        if returns_stock(order.status, status):
            _return_stock(order)
        payment_status = PAYMENT_STATUS_AFTER.get(status)
        if payment_status is not None:
            Payment.objects.filter(order=order).update(status=payment_status, updated_at=timezone.now())
        order.status = status
        order.version += 1
        order.save(update_fields=["status", "version", "updated_at"])
        _write_event(order=order, event_type=EventType.ORDER_STATUS_CHANGED)
    return order


def order_soft_delete(*, order_id: int, deleted_by: int) -> Order:
    """Marks an order deleted by admin ``deleted_by`` and writes ``OrderDeleted``. Deleting an
    already deleted order changes nothing and writes no event, so a retried DELETE is harmless."""
    with transaction.atomic():
        order = _locked_order(order_id)
        if order.is_deleted:
            return order
        order.deleted_at = timezone.now()
        order.deleted_by = deleted_by
        order.version += 1
        order.save(update_fields=["deleted_at", "deleted_by", "version", "updated_at"])
        _write_event(order=order, event_type=EventType.ORDER_DELETED)
    return order


# --- admin API tokens ---------------------------------------------------------------------------


def admin_token_digest(token: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 (no salt, no stretching) cannot be reversed
    # and still lets a request find its token with one indexed lookup.
    return hashlib.sha256(token.encode()).hexdigest()


def admin_api_token_issue(*, user: AbstractBaseUser) -> str:
    """Issues a new token for an active staff user and returns it; only its digest is stored."""
    if not (user.is_active and getattr(user, "is_staff", False)):
        raise InvalidInput("admin API tokens are only issued to active staff users", field="user")
    token = secrets.token_urlsafe(32)
    AdminApiToken.objects.create(user_id=user.pk, token_hash=admin_token_digest(token))
    return token


def admin_api_token_mark_used(*, token: AdminApiToken) -> None:
    AdminApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
