"""Who may read and change personal data through the orders API: every order carries its
customer's email, so every order and customer route answers 401 without credentials, 403 to a
staff user who lacks the route's model permission (holding every other one), and works with it.
The catalogue's reads stay public."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from orders.models import Customer, Order, Product
from orders.services import order_soft_delete
from outbox.models import OutboxEvent
from tests.orders.conftest import API_PERMISSIONS, Admin
from tests.orders.test_api import assert_error


@dataclass(frozen=True)
class Shop:
    customer: Customer
    product: Product
    order: Order
    deleted: Order


@pytest.fixture
def shop(make_customer: Callable[..., Customer], make_product: Callable[..., Product]) -> Shop:
    from orders.services import OrderLine, order_create

    customer, product = make_customer("private@example.com"), make_product(stock=100)

    def order() -> Order:
        return order_create(user_id=customer.pk, lines=[OrderLine(product.pk, 1)], payment_method="CARD")

    live, deleted = order(), order()
    order_soft_delete(order_id=deleted.pk, deleted_by=1)
    return Shop(customer, product, live, deleted)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # formatted with the shop
    permission: str
    success: int = 200
    body: Callable[[Shop], dict[str, Any]] | None = None
    shows: str = "private@example.com"  # the email a successful call answers with

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def call(self, client: Client, shop: Shop, **headers: str) -> Any:
        path = self.path.format(shop=shop)
        if self.body is None:
            return client.generic(self.method, path, headers=headers)
        body = json.dumps(self.body(shop))
        return client.generic(self.method, path, body, content_type="application/json", headers=headers)


def order_in(shop: Shop) -> dict[str, Any]:
    return {"user_id": shop.customer.pk, "items": [{"product_id": shop.product.pk, "quantity": 1}]}


ROUTES = [
    Route("GET", "/api/orders", "orders.view_order"),
    Route("GET", "/api/orders?include_deleted=true", "orders.view_order"),
    Route("GET", "/api/orders/{shop.order.pk}", "orders.view_order"),
    Route("GET", "/api/orders/{shop.deleted.pk}", "orders.view_order"),
    Route("GET", "/api/users", "orders.view_customer"),
    Route("GET", "/api/users/{shop.customer.pk}", "orders.view_customer"),
    Route("POST", "/api/orders", "orders.add_order", 201, order_in),
    Route(
        "PATCH",
        "/api/orders/{shop.order.pk}/status",
        "orders.change_order",
        200,
        lambda _: {"status": "PAID"},
    ),
    Route(
        "POST",
        "/api/users",
        "orders.add_customer",
        201,
        lambda _: {"email": "new@example.com"},
        "new@example.com",
    ),
]
by_route = pytest.mark.parametrize("route", ROUTES, ids=str)


def written_state() -> tuple[int, int, int, list[str]]:
    return (
        Order.objects.count(),
        Customer.objects.count(),
        OutboxEvent.objects.count(),
        list(Order.objects.order_by("id").values_list("status", flat=True)),
    )


@pytest.mark.django_db
@by_route
def test_personal_data_needs_credentials(client: Client, shop: Shop, route: Route) -> None:
    before = written_state()
    response = route.call(client, shop)
    assert_error(response, 401, "not_authenticated")
    assert "private@example.com" not in response.content.decode()
    assert written_state() == before


@pytest.mark.django_db
@by_route
def test_personal_data_needs_the_routes_permission(
    client: Client, shop: Shop, make_admin: Callable[..., Admin], route: Route
) -> None:
    assert route.permission in API_PERMISSIONS
    clerk = make_admin(permissions=tuple(p for p in API_PERMISSIONS if p != route.permission))
    before = written_state()
    response = route.call(client, shop, Authorization=f"Bearer {clerk.token}")
    assert route.permission in assert_error(response, 403, "permission_denied")["message"]
    assert "private@example.com" not in response.content.decode()
    assert written_state() == before


@pytest.mark.django_db
@by_route
def test_personal_data_is_served_with_the_permission(
    client: Client, shop: Shop, make_admin: Callable[..., Admin], route: Route
) -> None:
    holder = make_admin(permissions=(route.permission,))
    response = route.call(client, shop, Authorization=f"Bearer {holder.token}")
    assert response.status_code == route.success, response.content
    assert route.shows in response.content.decode()


@pytest.mark.django_db
def test_deleted_orders_are_listed_to_order_viewers(
    client: Client, shop: Shop, make_admin: Callable[..., Admin]
) -> None:
    viewer = make_admin(permissions=("orders.view_order",))
    listed = client.get(
        "/api/orders", {"include_deleted": "true"}, headers={"Authorization": f"Bearer {viewer.token}"}
    ).json()
    assert {o["order_id"] for o in listed["items"]} == {shop.order.pk, shop.deleted.pk}


@pytest.mark.django_db
def test_former_staff_get_no_personal_data(
    client: Client, shop: Shop, make_admin: Callable[..., Admin]
) -> None:
    former = make_admin(is_staff=False)
    response = client.get("/api/users", headers={"Authorization": f"Bearer {former.token}"})
    assert_error(response, 403, "forbidden")


@pytest.mark.django_db
def test_a_staff_session_reads_without_csrf_but_writes_only_with_it(
    shop: Shop, make_admin: Callable[..., Admin]
) -> None:
    clerk = make_admin()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(clerk.user)
    assert browser.get(f"/api/users/{shop.customer.pk}").json()["email"] == "private@example.com"

    create = next(route for route in ROUTES if str(route) == "POST /api/orders")
    before = written_state()
    assert_error(create.call(browser, shop), 403, "csrf_failed")
    assert written_state() == before
    browser.get("/admin/")  # renders the logout form, which sets the CSRF cookie
    created = create.call(browser, shop, **{"X-CSRFToken": browser.cookies["csrftoken"].value})
    assert created.status_code == 201, created.content


@pytest.mark.django_db
def test_the_catalogue_reads_stay_public(client: Client, shop: Shop) -> None:
    assert client.get("/api/products").status_code == 200
    assert client.get(f"/api/products/{shop.product.pk}").json()["id"] == shop.product.pk


@pytest.mark.django_db
def test_a_permission_held_through_a_group_serves_the_route(
    client: Client, shop: Shop, make_admin: Any
) -> None:
    from django.contrib.auth.models import Group, Permission

    member = make_admin(permissions=())
    clerks = Group.objects.create(name="order clerks")
    clerks.permissions.add(Permission.objects.get(content_type__app_label="orders", codename="view_order"))
    member.user.groups.add(clerks)
    bearer = {"Authorization": f"Bearer {member.token}"}
    assert client.get(f"/api/orders/{shop.order.pk}", headers=bearer).status_code == 200
    assert_error(client.get(f"/api/users/{shop.customer.pk}", headers=bearer), 403, "permission_denied")


@pytest.mark.django_db
def test_a_permission_taken_away_applies_from_the_next_request(
    client: Client, shop: Shop, make_admin: Any
) -> None:
    from django.contrib.auth.models import Permission

    holder = make_admin(permissions=("orders.view_order",))
    bearer = {"Authorization": f"Bearer {holder.token}"}
    assert client.get(f"/api/orders/{shop.order.pk}", headers=bearer).status_code == 200
    holder.user.user_permissions.remove(
        Permission.objects.get(content_type__app_label="orders", codename="view_order")
    )
    assert_error(client.get(f"/api/orders/{shop.order.pk}", headers=bearer), 403, "permission_denied")


@pytest.mark.django_db
def test_a_superuser_token_holds_every_permission(client: Client, shop: Shop, make_admin: Any) -> None:
    root = make_admin(permissions=())
    root.user.is_superuser = True
    root.user.save(update_fields=["is_superuser"])
    response = client.get(f"/api/users/{shop.customer.pk}", headers={"Authorization": f"Bearer {root.token}"})
    assert response.status_code == 200, response.content
    assert "private@example.com" in response.content.decode()
