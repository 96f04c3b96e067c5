"""The order services against real MariaDB: one outbox row per change, versions +1, atomicity."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import pytest

from backend.errors import Conflict, InvalidInput, NotFound
from orders import services
from orders.models import Customer, Inventory, Order, OrderItem, Payment, Product
from orders.services import OrderLine, order_create, order_soft_delete, order_status_change
from orders.snapshots import order_snapshot
from outbox.models import OutboxEvent

UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


def events_of(order_id: int) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_type="order", aggregate_id=str(order_id)).order_by("id"))


def stock_of(product: Product) -> int:
    return Inventory.objects.get(product=product).quantity


@pytest.mark.django_db
def test_create_prices_from_catalogue_reserves_stock_and_writes_one_event(
    customer: Customer, make_product: Callable[..., Product]
) -> None:
    mug = make_product(price="10.00", stock=5)
    tee = make_product(price="19.95", stock=3)

    order = order_create(
        user_id=customer.pk,
        lines=[OrderLine(product_id=mug.pk, quantity=2), OrderLine(product_id=tee.pk, quantity=3)],
        payment_method="PAYPAL",
    )

    order.refresh_from_db()
    assert order.total_amount == Decimal("79.85")
    assert order.version == 1 and order.status == "PENDING"
    assert stock_of(mug) == 3 and stock_of(tee) == 0
    assert Payment.objects.get(order=order).amount == Decimal("79.85")

    [event] = events_of(order.pk)
    assert (event.event_type, event.aggregate_version, event.status) == ("OrderCreated", 1, "pending")
    payload = event.payload
    assert payload == order_snapshot(Order.objects.get(pk=order.pk))
    assert payload["total_amount"] == "79.85"
    assert payload["items_count"] == 5
    assert payload["user_email"] == customer.email
    assert payload["items"][1] == {
        "product_id": tee.pk,
        "sku": tee.sku,
        "product_name": "Thing",
        "quantity": 3,
        "unit_price": "19.95",
        "line_total": "59.85",
    }
    assert payload["payment"] == {"method": "PAYPAL", "status": "PENDING", "amount": "79.85"}
    assert UTC_Z.match(payload["created_at"]) and UTC_Z.match(payload["updated_at"])
    assert payload["deleted_at"] is None and payload["deleted_by"] is None


@pytest.mark.django_db
def test_every_change_writes_exactly_one_event_one_version_higher(
    make_order: Callable[..., Order],
) -> None:
    order = make_order()
    for status in ("PAID", "SHIPPED", "DELIVERED"):
        order_status_change(order_id=order.pk, status=status)
    order_soft_delete(order_id=order.pk, deleted_by=42)

    events = events_of(order.pk)
    assert [e.event_type for e in events] == [
        "OrderCreated",
        "OrderStatusChanged",
        "OrderStatusChanged",
        "OrderStatusChanged",
        "OrderDeleted",
    ]
    assert [e.aggregate_version for e in events] == [1, 2, 3, 4, 5]
    assert [e.payload["version"] for e in events] == [1, 2, 3, 4, 5]
    assert [e.payload["status"] for e in events] == ["PENDING", "PAID", "SHIPPED", "DELIVERED", "DELIVERED"]
    assert events[1].payload["payment"]["status"] == "COMPLETED"
    order.refresh_from_db()
    assert order.version == 5
    assert events[-1].payload["deleted_by"] == 42
    assert UTC_Z.match(events[-1].payload["deleted_at"])


@pytest.mark.django_db
def test_forbidden_transition_is_a_conflict_and_writes_nothing(make_order: Callable[..., Order]) -> None:
    order = make_order()
    for target in ("SHIPPED", "DELIVERED", "REFUNDED", "PENDING"):
        with pytest.raises(Conflict) as raised:
            order_status_change(order_id=order.pk, status=target)
        assert raised.value.code == "invalid_transition"
    with pytest.raises(InvalidInput):
        order_status_change(order_id=order.pk, status="LOST")
    with pytest.raises(NotFound):
        order_status_change(order_id=10**12, status="PAID")
    order.refresh_from_db()
    assert (order.status, order.version) == ("PENDING", 1)
    assert len(events_of(order.pk)) == 1


@pytest.mark.django_db
def test_cancel_and_early_refund_return_stock_but_late_refund_does_not(
    customer: Customer, make_product: Callable[..., Product]
) -> None:
    product = make_product(stock=10)

    def order_of(quantity: int) -> int:
        line = OrderLine(product_id=product.pk, quantity=quantity)
        return order_create(user_id=customer.pk, lines=[line], payment_method="CARD").pk

    cancelled = order_of(2)
    order_status_change(order_id=cancelled, status="CANCELLED")
    assert stock_of(product) == 10
    assert Payment.objects.get(order_id=cancelled).status == "CANCELLED"
    with pytest.raises(Conflict):
        order_status_change(order_id=cancelled, status="PAID")

    refunded_early = order_of(3)
    order_status_change(order_id=refunded_early, status="PAID")
    order_status_change(order_id=refunded_early, status="REFUNDED")
    assert stock_of(product) == 10
    assert Payment.objects.get(order_id=refunded_early).status == "REFUNDED"

    refunded_late = order_of(4)
    for status in ("PAID", "SHIPPED", "DELIVERED", "REFUNDED"):
        order_status_change(order_id=refunded_late, status=status)
    assert stock_of(product) == 6


@pytest.mark.django_db
def test_soft_delete_is_idempotent_and_blocks_status_changes(make_order: Callable[..., Order]) -> None:
    order = make_order()
    first = order_soft_delete(order_id=order.pk, deleted_by=7)
    again = order_soft_delete(order_id=order.pk, deleted_by=8)

    assert again.deleted_at == first.deleted_at and again.deleted_by == 7 and again.version == 2
    assert [e.event_type for e in events_of(order.pk)] == ["OrderCreated", "OrderDeleted"]
    with pytest.raises(Conflict) as raised:
        order_status_change(order_id=order.pk, status="PAID")
    assert raised.value.code == "order_deleted"
    assert len(events_of(order.pk)) == 2
    with pytest.raises(NotFound):
        order_soft_delete(order_id=10**12, deleted_by=7)


@pytest.mark.django_db
def test_create_refuses_bad_lines_unknown_things_and_insufficient_stock(
    customer: Customer, make_product: Callable[..., Product]
) -> None:
    product = make_product(stock=1)
    retired = make_product(is_active=False)
    cases: list[tuple[dict[str, object], type[Exception], str | None]] = [
        ({"lines": []}, InvalidInput, "items"),
        ({"lines": [OrderLine(product.pk, 0)]}, InvalidInput, "items.0.quantity"),
        ({"lines": [OrderLine(product.pk, -1)]}, InvalidInput, "items.0.quantity"),
        ({"lines": [OrderLine(product.pk, 1), OrderLine(product.pk, 1)]}, InvalidInput, "items.1.product_id"),
        ({"lines": [OrderLine(10**12, 1)]}, NotFound, "items.0.product_id"),
        ({"lines": [OrderLine(retired.pk, 1)]}, Conflict, "items.0.product_id"),
        ({"lines": [OrderLine(product.pk, 2)]}, Conflict, "items.0.quantity"),
        ({"user_id": 10**12}, NotFound, "user_id"),
        ({"payment_method": "GOLD"}, InvalidInput, "payment_method"),
    ]
    for overrides, error, field in cases:
        kwargs: dict[str, object] = {
            "user_id": customer.pk,
            "lines": [OrderLine(product.pk, 1)],
            "payment_method": "CARD",
            **overrides,
        }
        with pytest.raises(error) as raised:
            order_create(**kwargs)  # type: ignore[arg-type]
        assert raised.value.field == field, overrides  # type: ignore[attr-defined]
    assert Order.objects.count() == 0 and OutboxEvent.objects.count() == 0
    assert stock_of(product) == 1


# --- atomicity: real transactions, not the test's wrapping one ------------------------------------


class Boom(Exception):
    pass


def assert_nothing_written(product: Product, stock_before: int) -> None:
    assert Order.objects.count() == 0
    assert OrderItem.objects.count() == 0
    assert Payment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    assert stock_of(product) == stock_before


@pytest.mark.django_db(transaction=True)
def test_failure_after_order_rows_are_written_leaves_no_order_and_no_event(
    customer: Customer, make_product: Callable[..., Product], monkeypatch: pytest.MonkeyPatch
) -> None:
    product = make_product(stock=5)
    real_outbox_event_create = services.outbox_event_create
    written: list[OutboxEvent] = []

    def write_then_fail(**kwargs: object) -> OutboxEvent:
        # By now the order, its items, its payment, the stock change and the outbox row are all
        # written inside the transaction.
        written.append(real_outbox_event_create(**kwargs))  # type: ignore[arg-type]
        assert Order.objects.count() == 1 and OutboxEvent.objects.count() == 1
        raise Boom

    monkeypatch.setattr(services, "outbox_event_create", write_then_fail)
    with pytest.raises(Boom):
        order_create(user_id=customer.pk, lines=[OrderLine(product.pk, 2)], payment_method="CARD")

    assert len(written) == 1
    assert_nothing_written(product, stock_before=5)


@pytest.mark.django_db(transaction=True)
def test_failure_while_building_the_event_rolls_the_order_back(
    customer: Customer, make_product: Callable[..., Product], monkeypatch: pytest.MonkeyPatch
) -> None:
    product = make_product(stock=5)

    def fail(order: Order) -> dict[str, object]:
        raise Boom

    monkeypatch.setattr(services, "order_snapshot", fail)
    with pytest.raises(Boom):
        order_create(user_id=customer.pk, lines=[OrderLine(product.pk, 2)], payment_method="CARD")
    assert_nothing_written(product, stock_before=5)


@pytest.mark.django_db(transaction=True)
def test_failed_status_change_and_delete_leave_order_and_outbox_untouched(
    make_order: Callable[..., Order], monkeypatch: pytest.MonkeyPatch
) -> None:
    order = make_order(quantity=2)
    product_id = order.items.get().product_id

    def fail(**kwargs: object) -> None:
        raise Boom

    monkeypatch.setattr(services, "outbox_event_create", fail)
    with pytest.raises(Boom):
        order_status_change(order_id=order.pk, status="CANCELLED")
    with pytest.raises(Boom):
        order_soft_delete(order_id=order.pk, deleted_by=1)

    order.refresh_from_db()
    assert (order.status, order.version, order.deleted_at) == ("PENDING", 1, None)
    assert Inventory.objects.get(product_id=product_id).quantity == 8  # cancel's restock rolled back
    assert Payment.objects.get(order=order).status == "PENDING"
    assert [e.aggregate_version for e in events_of(order.pk)] == [1]
