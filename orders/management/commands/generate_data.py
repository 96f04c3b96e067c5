"""manage.py generate_data: realistic customers, products and orders at a chosen rate, written
through the orders services, so every order and status change goes out through the outbox like a
real one and the pipeline can be watched under a steady load.

    manage.py generate_data --users 50 --products 20 --orders 1000 --rate 20

Status changes follow the order state machine (some orders are paid, shipped, delivered, a few
cancelled or refunded). The progress bar redraws in place on a terminal and prints a line every
10 % elsewhere (CI logs, pipes)."""

from __future__ import annotations

import random
import time
import unicodedata
import uuid
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from backend.errors import AppError
from orders import services
from orders.services import OrderLine


def ascii_slug(name: str) -> str:
    # Email local parts must be ASCII: "Müller" becomes "muller".
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


FIRST_NAMES = [
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Emma",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kenji",
    "Lena",
]
LAST_NAMES = [
    "Silva",
    "Müller",
    "Nguyen",
    "Okafor",
    "Rossi",
    "Smith",
    "Tanaka",
    "Dubois",
    "Kowalski",
    "Haddad",
]
PRODUCTS = [
    ("Mug", "9.90"),
    ("T-shirt", "19.90"),
    ("Notebook", "4.50"),
    ("Backpack", "49.00"),
    ("Headphones", "89.99"),
    ("Water bottle", "14.00"),
    ("Desk lamp", "34.50"),
    ("Keyboard", "59.00"),
    ("Mouse", "24.90"),
    ("Hoodie", "44.00"),
    ("Socks", "6.50"),
    ("Sunglasses", "79.00"),
    ("Phone case", "12.00"),
    ("Charger", "21.00"),
    ("Poster", "8.00"),
]
PAYMENT_METHODS = ["CARD", "CARD", "CARD", "PAYPAL", "BANK_TRANSFER", "CASH_ON_DELIVERY"]
# Where an order's life stops, with weights: most orders are paid and move on, a few are cancelled.
JOURNEYS = [
    ([], 30), (["PAID"], 20), (["PAID", "SHIPPED"], 20), (["PAID", "SHIPPED", "DELIVERED"], 20),
    (["CANCELLED"], 7), (["PAID", "REFUNDED"], 3),
]  # fmt: skip


class Progress:
    def __init__(self, total: int, stream: OutputWrapper) -> None:
        self.total, self.stream = total, stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last_tenth = -1

    def update(self, done: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        line = f"orders {done}/{self.total} ({done / elapsed:.1f}/s)"
        if self.tty:
            width = 30
            filled = width * done // max(self.total, 1)
            ending = "\n" if done == self.total else ""
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {line}", ending=ending)
        elif (tenth := 10 * done // max(self.total, 1)) != self.last_tenth:
            self.last_tenth = tenth
            self.stream.write(line)
        self.stream.flush()


class Command(BaseCommand):
    help = "Create customers, products and orders (with status changes) at a chosen rate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=20, help="new customers (default 20)")
        parser.add_argument("--products", type=int, default=10, help="new products (default 10)")
        parser.add_argument("--orders", type=int, default=200, help="new orders (default 200)")
        parser.add_argument(
            "--rate", type=float, default=0.0, help="orders per second; 0 = as fast as possible"
        )
        parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable data set")

    def handle(self, *args: Any, **options: Any) -> None:
        users, products, orders, rate = (
            options["users"],
            options["products"],
            options["orders"],
            options["rate"],
        )
        if users < 1 or products < 1 or orders < 0:
            raise CommandError("--users and --products must be at least 1, --orders at least 0")
        if rate < 0:
            raise CommandError("--rate must be 0 (unthrottled) or a positive number of orders per second")
        rng = random.Random(options["seed"])
        tag = uuid.uuid4().hex[:6]
        customer_ids = [
            services.customer_create(
                email=f"{ascii_slug(first)}.{ascii_slug(last)}.{tag}{i}@example.com", name=f"{first} {last}"
            ).pk
            for i in range(users)
            for first, last in [(rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))]
        ]
        product_ids = [
            services.product_create(
                sku=f"GEN-{tag}-{i:04d}", name=f"{name} #{i}", price=Decimal(price), stock=orders * 5 + 100
            ).pk
            for i in range(products)
            for name, price in [PRODUCTS[i % len(PRODUCTS)]]
        ]
        self.stdout.write(f"created {users} customers and {products} products (tag {tag})")

        progress = Progress(orders, self.stderr)
        changes = 0
        started = time.monotonic()
        for done in range(1, orders + 1):
            lines = [
                OrderLine(product_id=pid, quantity=rng.choice([1, 1, 1, 2, 3]))
                for pid in rng.sample(product_ids, min(len(product_ids), rng.choice([1, 1, 2, 3])))
            ]
            try:
                order = services.order_create(
                    user_id=rng.choice(customer_ids), lines=lines, payment_method=rng.choice(PAYMENT_METHODS)
                )
                journey = rng.choices([j for j, _ in JOURNEYS], weights=[w for _, w in JOURNEYS])[0]
                for status in journey:
                    services.order_status_change(order_id=order.pk, status=status)
                    changes += 1
            except AppError as exc:
                raise CommandError(f"order {done}: {exc.message}") from exc
            progress.update(done)
            if rate > 0:
                # Pace against the start, so slow orders are caught up rather than accumulated.
                time.sleep(max(0.0, started + done / rate - time.monotonic()))
        elapsed = time.monotonic() - started
        self.stdout.write(f"created {orders} orders and {changes} status changes in {elapsed:.1f}s")
