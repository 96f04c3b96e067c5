"""manage.py seed_demo: a small catalogue with stock and a few customers, so the orders API is
usable from an empty database. Running it again tops stock up and creates nothing twice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from orders.models import Customer, Inventory, Product

DEMO_PRODUCTS = [
    ("SKU-0001", "Mug", Decimal("10.00")),
    ("SKU-0002", "T-shirt", Decimal("19.90")),
    ("SKU-0003", "Notebook", Decimal("4.50")),
    ("SKU-0004", "Backpack", Decimal("49.00")),
    ("SKU-0005", "Headphones", Decimal("89.99")),
]
DEMO_CUSTOMERS = [("ana@example.com", "Ana"), ("ben@example.com", "Ben"), ("chloe@example.com", "Chloe")]


class Command(BaseCommand):
    help = "Create demo products (with stock) and customers; safe to run more than once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stock", type=int, default=100, help="minimum stock per product (default 100)")

    @transaction.atomic
    def handle(self, *args: Any, stock: int, **options: Any) -> None:
        if stock < 0:
            raise CommandError("--stock must not be negative")
        for sku, name, price in DEMO_PRODUCTS:
            product, _ = Product.objects.get_or_create(sku=sku, defaults={"name": name, "price": price})
            inventory, _ = Inventory.objects.select_for_update().get_or_create(product=product)
            if inventory.quantity < stock:
                inventory.quantity = stock
                inventory.save(update_fields=["quantity", "updated_at"])
        for email, name in DEMO_CUSTOMERS:
            Customer.objects.get_or_create(email=email, defaults={"name": name})
        self.stdout.write(
            f"{Product.objects.count()} products, {Customer.objects.count()} customers; "
            f"every demo product has at least {stock} in stock"
        )
