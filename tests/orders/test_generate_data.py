"""manage.py generate_data writes through the orders services: every order and status change has
its outbox event, statuses follow the state machine, and the progress works without a terminal."""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import CommandError, call_command
from django.core.validators import validate_email

from orders.management.commands.generate_data import FIRST_NAMES, LAST_NAMES, ascii_slug
from orders.models import Customer, Order, Product
from outbox.models import OutboxEvent

pytestmark = pytest.mark.django_db


def test_generates_customers_products_and_orders_with_their_outbox_events() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("generate_data", users=4, products=3, orders=40, seed=7, stdout=out, stderr=err)
    assert Customer.objects.count() == 4 and Product.objects.count() == 3
    orders = list(Order.objects.all())
    assert len(orders) == 40
    # One event per version: OrderCreated plus one per status change.
    assert OutboxEvent.objects.count() == sum(order.version for order in orders)
    assert {order.status for order in orders} >= {"PENDING", "PAID"}
    assert "created 40 orders and" in out.getvalue()
    progress = err.getvalue().splitlines()
    assert progress[-1].startswith("orders 40/40 (") and len(progress) <= 11


def test_rate_paces_the_orders() -> None:
    started = time.monotonic()
    call_command(
        "generate_data", users=1, products=1, orders=6, rate=10, stdout=io.StringIO(), stderr=io.StringIO()
    )
    assert time.monotonic() - started >= 0.5


@pytest.mark.parametrize(("option", "value"), [("users", 0), ("products", 0), ("orders", -1), ("rate", -1.0)])
def test_bad_arguments_are_refused(option: str, value: float) -> None:
    with pytest.raises(CommandError):
        call_command("generate_data", **{option: value}, stdout=io.StringIO(), stderr=io.StringIO())


def test_every_generated_email_is_valid_even_for_accented_names() -> None:
    for first in FIRST_NAMES:
        for last in LAST_NAMES:
            validate_email(f"{ascii_slug(first)}.{ascii_slug(last)}.abc1230@example.com")
    assert ascii_slug("Müller") == "muller"
