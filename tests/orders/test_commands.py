"""Management commands: issuing admin API tokens and seeding a usable shop from an empty database."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from orders.models import AdminApiToken, Customer, Inventory, Product
from tests.orders.conftest import grant


def issue_token(username: str, said: io.StringIO | None = None) -> str:
    out = io.StringIO()
    call_command("create_admin_token", username, stdout=out, stderr=said or io.StringIO())
    return out.getvalue().strip()


@pytest.mark.django_db
def test_create_admin_token_issues_a_working_token_and_stores_only_its_digest(client: Client) -> None:
    staff = get_user_model().objects.create_user(username="ops", password="pw", is_staff=True)
    grant(staff, "orders.delete_order")
    said = io.StringIO()
    token = issue_token("ops", said)

    assert len(token) >= 40
    stored = AdminApiToken.objects.get(user=staff)
    assert token not in stored.token_hash and len(stored.token_hash) == 64

    # README's example reads the X-Admin-Id to send from what the command says.
    admin_id = re.search(r"send it with X-Admin-Id: (\d+)$", said.getvalue().strip())
    assert admin_id is not None and admin_id[1] == str(staff.pk), said.getvalue()
    response = client.delete(
        "/admin/orders/424242", headers={"Authorization": f"Bearer {token}", "X-Admin-Id": admin_id[1]}
    )
    assert response.status_code == 404  # authenticated and authorised; the order just does not exist
    stored.refresh_from_db()
    assert stored.last_used_at is not None


@pytest.mark.django_db
def test_create_admin_token_refuses_unknown_and_non_staff_users() -> None:
    get_user_model().objects.create_user(username="shopper", password="pw")
    with pytest.raises(CommandError, match="no user named"):
        issue_token("nobody")
    with pytest.raises(CommandError, match="staff"):
        issue_token("shopper")
    assert AdminApiToken.objects.count() == 0


@pytest.mark.django_db
def test_seed_demo_makes_the_api_usable_and_is_idempotent(staff_client: Client) -> None:
    client = staff_client  # the shop's customers and orders are served to staff only
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", "--stock", "5", stdout=io.StringIO())

    assert Product.objects.count() == 5 and Customer.objects.count() == 3
    assert set(Inventory.objects.values_list("quantity", flat=True)) == {100}

    customer = client.get("/api/users").json()["items"][0]
    product = client.get("/api/products").json()["items"][0]
    response = client.post(
        "/api/orders",
        {"user_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 2}]},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content

    with pytest.raises(CommandError, match="negative"):
        call_command("seed_demo", "--stock", "-1", stdout=io.StringIO())
