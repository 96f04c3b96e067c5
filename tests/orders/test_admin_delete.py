"""DELETE /admin/orders/{id}: the whole matrix of header, credentials and order state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from orders.models import AdminApiToken, Order
from outbox.models import OutboxEvent
from tests.orders.conftest import Admin
from tests.orders.test_api import assert_error


def delete(client: Client, order_id: int, **headers: str) -> Any:
    return client.delete(f"/admin/orders/{order_id}", headers=headers)


def deleted_events(order: Order) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(order.pk), event_type="OrderDeleted"))


@pytest.fixture
def order(make_order: Callable[..., Order]) -> Order:
    return make_order()


def assert_untouched(order: Order) -> None:
    order.refresh_from_db()
    assert order.deleted_at is None and order.version == 1
    assert deleted_events(order) == []


@pytest.mark.django_db
def test_missing_header_is_400(client: Client, admin: Admin, order: Order) -> None:
    assert_error(
        delete(client, order.pk, Authorization=f"Bearer {admin.token}"), 400, "missing_header", "X-Admin-Id"
    )
    assert_untouched(order)


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.0", "01", "1 2", "+1", "99999999999999999999", " "])
def test_malformed_header_is_400(client: Client, admin: Admin, order: Order, value: str) -> None:
    response = delete(client, order.pk, **admin.headers(admin_id=value))
    assert_error(response, 400, field="X-Admin-Id")
    assert response.json()["error"]["code"] in {"malformed_header", "missing_header"}
    assert_untouched(order)


@pytest.mark.django_db
def test_no_credentials_is_401(client: Client, admin: Admin, order: Order) -> None:
    assert_error(delete(client, order.pk, **{"X-Admin-Id": str(admin.user.pk)}), 401, "not_authenticated")
    assert_untouched(order)


@pytest.mark.django_db
def test_unknown_revoked_or_inactive_tokens_are_401(
    client: Client, make_admin: Callable[..., Admin], order: Order
) -> None:
    unknown = {"Authorization": "Bearer not-a-token", "X-Admin-Id": "1"}
    assert_error(delete(client, order.pk, **unknown), 401)
    assert_error(delete(client, order.pk, **{"Authorization": "Basic abc", "X-Admin-Id": "1"}), 401)

    revoked = make_admin()
    AdminApiToken.objects.filter(user=revoked.user).update(revoked_at=timezone.now())
    assert_error(delete(client, order.pk, **revoked.headers()), 401)

    inactive = make_admin()
    get_user_model().objects.filter(pk=inactive.user.pk).update(is_active=False)
    assert_error(delete(client, order.pk, **inactive.headers()), 401)
    assert_untouched(order)


@pytest.mark.django_db
def test_non_staff_credentials_are_403(
    client: Client, make_admin: Callable[..., Admin], order: Order
) -> None:
    former_staff = make_admin(is_staff=False)
    assert_error(delete(client, order.pk, **former_staff.headers()), 403, "forbidden")

    shopper = get_user_model().objects.create_user(username="shopper", password="pw")
    client.force_login(shopper)
    assert_error(delete(client, order.pk, **{"X-Admin-Id": str(shopper.pk)}), 403, "forbidden")
    assert_untouched(order)


@pytest.mark.django_db
def test_staff_without_the_delete_permission_is_403(
    client: Client, make_admin: Callable[..., Admin], order: Order
) -> None:
    # Django admin refuses this user the delete page: the API must not be a way around it.
    clerk = make_admin(permissions=("orders.view_order", "orders.change_order", "orders.add_product"))
    error = assert_error(delete(client, order.pk, **clerk.headers()), 403, "permission_denied")
    assert "orders.delete_order" in error["message"]
    assert_untouched(order)


@pytest.mark.django_db
def test_header_naming_another_user_is_403(
    client: Client, make_admin: Callable[..., Admin], order: Order
) -> None:
    alice, bob = make_admin(), make_admin()
    assert_error(delete(client, order.pk, **alice.headers(admin_id=bob.user.pk)), 403, field="X-Admin-Id")
    assert_untouched(order)


@pytest.mark.django_db
def test_unknown_order_is_404(client: Client, admin: Admin) -> None:
    assert_error(delete(client, 987654321, **admin.headers()), 404, "not_found")


@pytest.mark.django_db
def test_success_records_the_admin_and_a_repeat_is_idempotent(
    client: Client, admin: Admin, order: Order
) -> None:
    first = delete(client, order.pk, **admin.headers())
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["deleted_by"] == admin.user.pk and body["deleted_at"].endswith("Z") and body["version"] == 2

    order.refresh_from_db()
    assert order.deleted_by == admin.user.pk and order.deleted_at is not None
    [event] = deleted_events(order)
    assert event.aggregate_version == 2
    assert event.payload["deleted_by"] == admin.user.pk
    assert event.payload == body

    repeat = delete(client, order.pk, **admin.headers())
    assert repeat.status_code == 200
    assert repeat.json() == body
    assert len(deleted_events(order)) == 1
    assert OutboxEvent.objects.filter(aggregate_id=str(order.pk)).count() == 2

    # A deleted order is gone from the default list and cannot change status any more.
    assert client.get("/api/orders", headers=admin.headers()).json()["total"] == 0
    changed = client.patch(
        f"/api/orders/{order.pk}/status",
        {"status": "PAID"},
        content_type="application/json",
        headers=admin.headers(),
    )
    assert_error(changed, 409, "order_deleted")


@pytest.mark.django_db
def test_staff_session_works_and_needs_a_csrf_token(admin: Admin, order: Order) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin.user)
    header = {"X-Admin-Id": str(admin.user.pk)}

    assert_error(delete(client, order.pk, **header), 403, "csrf_failed")
    assert_untouched(order)

    client.get("/admin/")  # renders the logout form, which sets the CSRF cookie
    csrf_token = client.cookies["csrftoken"].value
    response = delete(client, order.pk, **header, **{"X-CSRFToken": csrf_token})
    assert response.status_code == 200, response.content
    assert response.json()["deleted_by"] == admin.user.pk
