"""Builders for the orders tests: customers, products with stock, staff users with API tokens.
They go through the services, so tests start from states the application itself can reach."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from orders.models import Customer, Order, Product
from orders.services import (
    OrderLine,
    admin_api_token_issue,
    customer_create,
    order_create,
    product_create,
)


@dataclass(frozen=True)
class Admin:
    user: Any
    token: str

    def headers(self, admin_id: object = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "X-Admin-Id": str(self.user.pk if admin_id is None else admin_id),
        }


@pytest.fixture
def make_customer() -> Callable[..., Customer]:
    counter = iter(range(1, 1_000_000))

    def make(email: str | None = None) -> Customer:
        return customer_create(email=email or f"customer{next(counter)}@example.com", name="Test")

    return make


@pytest.fixture
def make_product() -> Callable[..., Product]:
    counter = iter(range(1, 1_000_000))

    def make(price: str = "10.00", stock: int = 10, is_active: bool = True) -> Product:
        return product_create(
            sku=f"SKU-T{next(counter):05d}",
            name="Thing",
            price=Decimal(price),
            stock=stock,
            is_active=is_active,
        )

    return make


@pytest.fixture
def customer(make_customer: Callable[..., Customer]) -> Customer:
    return make_customer()


@pytest.fixture
def make_order(customer: Customer, make_product: Callable[..., Product]) -> Callable[..., Order]:
    def make(quantity: int = 1) -> Order:
        product = make_product()
        return order_create(
            user_id=customer.pk,
            lines=[OrderLine(product_id=product.pk, quantity=quantity)],
            payment_method="CARD",
        )

    return make


# Every permission the API's routes ask for, as Django admin does for the same read or change:
# app_label.codename.
API_PERMISSIONS = (
    "orders.view_order",
    "orders.add_order",
    "orders.change_order",
    "orders.delete_order",
    "orders.view_customer",
    "orders.add_customer",
    "orders.add_product",
)


def grant(user: Any, *permissions: str) -> None:
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


@pytest.fixture
def make_admin() -> Callable[..., Admin]:
    counter = iter(range(1, 1_000_000))

    def make(is_staff: bool = True, permissions: tuple[str, ...] = API_PERMISSIONS) -> Admin:
        user = get_user_model().objects.create_user(
            username=f"admin{next(counter)}", password="pw-for-tests", is_staff=True
        )
        grant(user, *permissions)
        token = admin_api_token_issue(user=user)
        if not is_staff:
            # Tokens are only issued to staff; a user who later loses staff keeps a token that
            # must stop working for the admin API.
            user.is_staff = False
            user.save(update_fields=["is_staff"])
        return Admin(user=user, token=token)

    return make


@pytest.fixture
def admin(make_admin: Callable[..., Admin]) -> Admin:
    return make_admin()


@pytest.fixture
def staff_client(admin: Admin) -> Client:
    """Django's test client sending the bearer token of a staff user who holds every permission
    the API asks for: the API's caller, for tests about what an endpoint does rather than who
    may call it."""
    return Client(headers={"Authorization": f"Bearer {admin.token}"})
