"""Concurrent orders for scarce stock, each on its own thread and MariaDB connection: the row
locks on inventory decide, nobody oversells, the losers get a conflict (409 over HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from backend.errors import Conflict
from orders.models import Customer, Inventory, Order, Product
from orders.services import OrderLine, order_create
from outbox.models import OutboxEvent
from tests.orders.conftest import Admin


def race(workers: int, attempt: Callable[[int], Any]) -> list[Any]:
    """Runs ``attempt(i)`` on ``workers`` threads released together; returns results or errors."""
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = attempt(index)
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()  # each thread opened its own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a racing order never finished"
    return results


@pytest.mark.django_db(transaction=True)
def test_two_orders_for_the_last_unit_one_wins_one_conflicts(
    customer: Customer, make_product: Callable[..., Product]
) -> None:
    product = make_product(stock=1)

    results = race(
        2,
        lambda _: order_create(user_id=customer.pk, lines=[OrderLine(product.pk, 1)], payment_method="CARD"),
    )

    winners = [r for r in results if isinstance(r, Order)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert losers[0].code == "insufficient_stock"
    assert Inventory.objects.get(product=product).quantity == 0
    assert Order.objects.count() == 1 and OutboxEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_many_orders_over_shared_products_never_oversell_or_deadlock(
    make_customer: Callable[..., Customer], make_product: Callable[..., Product]
) -> None:
    first, second = make_product(stock=3), make_product(stock=3)
    buyers = [make_customer() for _ in range(8)]

    def attempt(index: int) -> Order:
        # Half of the orders list the products in the other order: the service must still lock
        # them in one global order, or two of these would deadlock.
        lines = [OrderLine(first.pk, 1), OrderLine(second.pk, 1)]
        return order_create(
            user_id=buyers[index].pk, lines=lines if index % 2 else lines[::-1], payment_method="CARD"
        )

    results = race(8, attempt)

    assert sum(isinstance(r, Order) for r in results) == 3, results
    assert sum(isinstance(r, Conflict) for r in results) == 5, results
    assert Inventory.objects.get(product=first).quantity == 0
    assert Inventory.objects.get(product=second).quantity == 0
    assert OutboxEvent.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_racing_http_orders_for_the_last_unit_get_201_and_409(
    customer: Customer, make_product: Callable[..., Product], admin: Admin
) -> None:
    from django.test import Client

    product = make_product(stock=1)
    body = {"user_id": customer.pk, "items": [{"product_id": product.pk, "quantity": 1}]}

    responses = race(
        2,
        lambda _: Client(headers=admin.headers()).post("/api/orders", body, content_type="application/json"),
    )

    assert sorted(r.status_code for r in responses) == [201, 409]
    conflict = next(r for r in responses if r.status_code == 409).json()
    assert conflict["error"]["code"] == "insufficient_stock"
    assert conflict["error"]["field"] == "items.0.quantity"
    assert Inventory.objects.get(product=product).quantity == 0
