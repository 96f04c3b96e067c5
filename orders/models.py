"""The shop's OLTP tables: customers, products, inventory, orders with their items and payment, and
the API tokens of staff users.

Models hold data and constraints only; every change that matters to analytics goes through
``orders.services`` so that it writes its outbox event in the same transaction.
"""

from __future__ import annotations

import enum
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from contract.types import OrderStatus, PaymentMethod, PaymentStatus

__all__ = [
    "AdminApiToken",
    "Customer",
    "Inventory",
    "Order",
    "OrderItem",
    "OrderStatus",
    "Payment",
    "PaymentMethod",
    "PaymentStatus",
    "Product",
]

ORDER_CURRENCY = "USD"
MONEY_PLACES = 2
PRICE_MAX_DIGITS = 10  # up to 99,999,999.99 per unit
TOTAL_MAX_DIGITS = 16  # room for 100 lines x 1,000 units x the largest price


def choices(values: type[enum.StrEnum]) -> list[tuple[str, str]]:
    """Django choices of one of the event contract's enums, which are written once, there."""
    return [(member.value, member.name.replace("_", " ").capitalize()) for member in values]


class Customer(models.Model):
    """A shop customer (the seed's ``users`` table). Staff and admins are Django auth users."""

    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "users"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.email


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=MONEY_PLACES,
        validators=[MinValueValidator(Decimal("0.01"))],
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "products"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gt=0), name="products_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class Inventory(models.Model):
    """Stock of one product. Rows are locked (SELECT ... FOR UPDATE, in product id order) while an
    order reserves or returns stock, so concurrent orders can never oversell."""

    product = models.OneToOneField(Product, on_delete=models.CASCADE, related_name="inventory")
    quantity = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "inventory"
        verbose_name_plural = "inventory"
        constraints = [
            # A second line of defence behind the row locks: stock can never go negative.
            models.CheckConstraint(
                condition=models.Q(quantity__gte=0), name="inventory_quantity_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id}: {self.quantity}"


class Order(models.Model):
    user = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=16, choices=choices(OrderStatus), default=OrderStatus.PENDING)
    total_amount = models.DecimalField(max_digits=TOTAL_MAX_DIGITS, decimal_places=MONEY_PLACES)
    currency = models.CharField(max_length=3, default=ORDER_CURRENCY)
    # Per-order, strictly increasing: 1 on create, +1 on every change. It is the outbox event's
    # aggregate_version and ClickHouse's ReplacingMergeTree version.
    version = models.PositiveIntegerField(default=1)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # The admin's numeric user id (X-Admin-Id). A plain number, not a foreign key, so the audit
    # trail survives the admin account.
    deleted_by = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "orders"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["user", "status"], name="orders_user_status"),
            models.Index(fields=["status", "deleted_at"], name="orders_status_deleted"),
            models.Index(fields=["deleted_at"], name="orders_deleted_at"),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk} ({self.status})"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class OrderItem(models.Model):
    """One line of an order. SKU, name and unit price are copied at order time, so the order (and
    every event about it) keeps what the customer bought even if the catalogue changes later."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_items")
    sku = models.CharField(max_length=64)
    product_name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=MONEY_PLACES)
    line_total = models.DecimalField(max_digits=TOTAL_MAX_DIGITS, decimal_places=MONEY_PLACES)

    class Meta:
        db_table = "order_items"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="order_items_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class Payment(models.Model):
    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="payment")
    method = models.CharField(max_length=32, choices=choices(PaymentMethod))
    status = models.CharField(max_length=16, choices=choices(PaymentStatus), default=PaymentStatus.PENDING)
    amount = models.DecimalField(max_digits=TOTAL_MAX_DIGITS, decimal_places=MONEY_PLACES)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "payments"

    def __str__(self) -> str:
        return f"{self.method} {self.status} {self.amount}"


class AdminApiToken(models.Model):
    """A bearer token for the admin API, issued to one staff user by ``manage.py
    create_admin_token``. Only a SHA-256 digest is stored: the token is shown once, at issue."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="admin_api_tokens"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "admin_api_tokens"

    def __str__(self) -> str:
        return f"token {self.pk} of user {self.user_id}"
