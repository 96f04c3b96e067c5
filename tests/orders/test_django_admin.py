"""Django admin next to the admin API: its pages render under /admin/, and deleting an order there
goes through order_soft_delete (an OrderDeleted event, no hard delete)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from orders.models import Customer, Order, OrderItem, Payment, Product
from outbox.models import OutboxEvent


@pytest.fixture
def superuser_client(client: Client) -> Client:
    user = get_user_model().objects.create_superuser(username="root", password="pw", email="root@example.com")
    client.force_login(user)
    client.user = user  # type: ignore[attr-defined]
    return client


@pytest.mark.django_db
def test_admin_pages_render_next_to_the_delete_api(
    superuser_client: Client, make_order: Callable[..., Order], make_product: Callable[..., Product]
) -> None:
    order = make_order(quantity=2)
    product = make_product()
    pages = [
        "/admin/",
        "/admin/orders/order/",
        "/admin/orders/order/?status__exact=PENDING&deleted=no",
        f"/admin/orders/order/?q={order.user.email}",
        "/admin/orders/order/?q=not-a-number",
        f"/admin/orders/order/{order.pk}/change/",
        "/admin/orders/product/",
        f"/admin/orders/product/{product.pk}/change/",
        "/admin/orders/inventory/",
        "/admin/orders/customer/",
    ]
    for page in pages:
        response = superuser_client.get(page)
        assert response.status_code == 200, (page, response.status_code)
    changelist = superuser_client.get("/admin/orders/order/").content.decode()
    assert f"/admin/orders/order/{order.pk}/change/" in changelist
    # Without the slash Django admin still redirects; the API only owns numeric /admin/orders/<id>.
    assert superuser_client.get("/admin/orders/order").status_code == 301
    assert superuser_client.get(f"/admin/orders/{order.pk}").status_code == 405


@pytest.mark.django_db
def test_deleting_from_the_admin_soft_deletes_through_the_service(
    superuser_client: Client, make_order: Callable[..., Order]
) -> None:
    order = make_order()
    confirmation = superuser_client.get(f"/admin/orders/order/{order.pk}/delete/")
    assert confirmation.status_code == 200
    assert "soft delete" in confirmation.content.decode()
    response = superuser_client.post(f"/admin/orders/order/{order.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302

    order.refresh_from_db()  # still there: soft-deleted, not removed
    assert order.deleted_at is not None and order.deleted_by == superuser_client.user.pk  # type: ignore[attr-defined]
    assert OrderItem.objects.filter(order=order).exists() and Payment.objects.filter(order=order).exists()
    assert list(
        OutboxEvent.objects.filter(aggregate_id=str(order.pk)).values_list("event_type", "aggregate_version")
    ) == [("OrderCreated", 1), ("OrderDeleted", 2)]


@pytest.mark.django_db
def test_bulk_action_soft_deletes_and_the_stock_delete_action_is_gone(
    superuser_client: Client, make_order: Callable[..., Order]
) -> None:
    orders = [make_order(), make_order()]
    changelist = superuser_client.get("/admin/orders/order/").content.decode()
    assert "soft_delete_selected" in changelist and "delete_selected" not in changelist.replace(
        "soft_delete_selected", ""
    )
    response = superuser_client.post(
        "/admin/orders/order/",
        {"action": "soft_delete_selected", "_selected_action": [o.pk for o in orders]},
    )
    assert response.status_code == 302
    assert Order.objects.filter(deleted_at__isnull=False).count() == 2
    assert OutboxEvent.objects.filter(event_type="OrderDeleted").count() == 2
    deleted_list = superuser_client.get("/admin/orders/order/?deleted=yes").content.decode()
    assert all(f"/admin/orders/order/{o.pk}/change/" in deleted_list for o in orders)


@pytest.mark.django_db
def test_inventory_is_editable_in_the_admin(
    superuser_client: Client, make_product: Callable[..., Product]
) -> None:
    product = make_product(stock=3)
    inventory = product.inventory
    response = superuser_client.post(
        "/admin/orders/inventory/",
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(inventory.pk),
            "form-0-quantity": "42",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    inventory.refresh_from_db()
    assert inventory.quantity == 42


@pytest.mark.django_db
def test_a_customers_email_is_read_only_in_the_admin(
    superuser_client: Client, make_order: Callable[..., Order]
) -> None:
    # Every order event carries the customer's email; an edit here would write no event, so
    # analytics would keep the old address. The admin may rename a customer, never re-address one.
    order = make_order()
    customer = order.user
    page = f"/admin/orders/customer/{customer.pk}/change/"
    assert 'name="email"' not in superuser_client.get(page).content.decode()

    response = superuser_client.post(page, {"email": "new@example.com", "name": "Renamed"})

    assert response.status_code == 302, response.content
    customer.refresh_from_db()
    assert customer.name == "Renamed" and customer.email != "new@example.com"
    assert OutboxEvent.objects.filter(aggregate_id=str(order.pk)).count() == 1
    # A new customer still gets an email.
    added = superuser_client.post(
        "/admin/orders/customer/add/", {"email": "first@example.com", "name": "New"}
    )
    assert added.status_code == 302 and Customer.objects.filter(email="first@example.com").exists()
