"""The orders HTTP API end to end through Django's test client on real MariaDB: the happy path
from an empty database, and an error matrix where every bad request gets a 4xx in the one error
shape, never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from orders.models import Customer, Inventory, Order, Product
from outbox.models import OutboxEvent
from tests.orders.conftest import Admin


def post(client: Client, path: str, body: Any, **headers: str) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json", headers=headers)


def patch(client: Client, path: str, body: Any) -> Any:
    return client.patch(path, json.dumps(body), content_type="application/json")


def assert_error(
    response: Any, status: int, code: str | None = None, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "field"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert error["field"] == field, error
    return error


@pytest.mark.django_db
def test_from_an_empty_database_to_a_delivered_order(staff_client: Client) -> None:
    product = post(
        staff_client, "/api/products", {"sku": "MUG-1", "name": "Mug", "price": "12.50", "stock": 4}
    )
    assert product.status_code == 201, product.content
    assert product.json() == {
        "id": product.json()["id"],
        "sku": "MUG-1",
        "name": "Mug",
        "price": "12.50",
        "is_active": True,
        "stock": 4,
    }
    customer = post(staff_client, "/api/users", {"email": "Ana@Example.com", "name": "Ana"})
    assert customer.status_code == 201 and customer.json()["email"] == "ana@example.com"

    created = post(
        staff_client,
        "/api/orders",
        {"user_id": customer.json()["id"], "items": [{"product_id": product.json()["id"], "quantity": 3}]},
    )
    assert created.status_code == 201, created.content
    order = created.json()
    assert (order["status"], order["version"], order["total_amount"], order["items_count"]) == (
        "PENDING",
        1,
        "37.50",
        3,
    )
    assert order["payment"] == {"method": "CARD", "status": "PENDING", "amount": "37.50"}
    assert staff_client.get(f"/api/products/{product.json()['id']}").json()["stock"] == 1

    for status in ("PAID", "SHIPPED", "DELIVERED"):
        changed = patch(staff_client, f"/api/orders/{order['order_id']}/status", {"status": status})
        assert changed.status_code == 200, changed.content
        assert changed.json()["status"] == status
    fetched = staff_client.get(f"/api/orders/{order['order_id']}").json()
    assert fetched["version"] == 4
    # The API shows an order exactly as its latest event does.
    latest = OutboxEvent.objects.filter(aggregate_id=str(order["order_id"])).order_by("-aggregate_version")[0]
    assert latest.payload == fetched


@pytest.mark.django_db
def test_list_orders_paginates_filters_and_hides_deleted(
    staff_client: Client, make_customer: Callable[..., Customer], make_product: Callable[..., Product]
) -> None:
    from orders.services import OrderLine, order_create, order_soft_delete, order_status_change

    product = make_product(stock=100)
    ana, ben = make_customer(), make_customer()
    ids = [
        order_create(user_id=user.pk, lines=[OrderLine(product.pk, 1)], payment_method="CARD").pk
        for user in (ana, ana, ana, ben, ben)
    ]
    order_status_change(order_id=ids[0], status="PAID")
    order_soft_delete(order_id=ids[1], deleted_by=1)

    page = staff_client.get("/api/orders", {"page_size": 2}).json()
    assert page["total"] == 4 and page["page"] == 1 and page["page_size"] == 2
    assert [o["order_id"] for o in page["items"]] == [ids[4], ids[3]]
    second = staff_client.get("/api/orders", {"page_size": 2, "page": 2}).json()
    assert [o["order_id"] for o in second["items"]] == [ids[2], ids[0]]
    assert staff_client.get("/api/orders", {"page": 9}).json()["items"] == []

    mine = staff_client.get("/api/orders", {"user_id": ana.pk}).json()
    assert [o["order_id"] for o in mine["items"]] == [ids[2], ids[0]]
    paid = staff_client.get("/api/orders", {"status": "PAID"}).json()
    assert [o["order_id"] for o in paid["items"]] == [ids[0]]
    everything = staff_client.get("/api/orders", {"include_deleted": "true"}).json()
    assert everything["total"] == 5
    deleted = staff_client.get(f"/api/orders/{ids[1]}").json()
    assert deleted["deleted_by"] == 1 and deleted["deleted_at"].endswith("Z")


@pytest.mark.django_db
def test_order_list_query_bounds_are_refused_with_422(staff_client: Client) -> None:
    assert_error(staff_client.get("/api/orders", {"page_size": 101}), 422, "invalid_input", "page_size")
    assert_error(staff_client.get("/api/orders", {"page_size": 0}), 422, field="page_size")
    assert_error(staff_client.get("/api/orders", {"page": 0}), 422, field="page")
    assert_error(staff_client.get("/api/orders", {"page": "x"}), 422, field="page")
    assert_error(staff_client.get("/api/orders", {"status": "LOST"}), 422, field="status")
    assert_error(staff_client.get("/api/orders", {"user_id": -1}), 422, field="user_id")
    assert_error(staff_client.get("/api/products", {"page_size": 500}), 422, field="page_size")
    assert_error(staff_client.get("/api/users", {"page_size": 500}), 422, field="page_size")


@pytest.fixture
def stocked(customer: Customer, make_product: Callable[..., Product]) -> dict[str, int]:
    return {"user_id": customer.pk, "product_id": make_product(stock=2).pk}


def order_body(stocked: dict[str, int], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": stocked["user_id"],
        "items": [{"product_id": stocked["product_id"], "quantity": 1}],
    }
    body.update(overrides)
    return body


@pytest.mark.django_db
def test_bad_order_requests_get_4xx_in_the_error_shape(staff_client: Client, stocked: dict[str, int]) -> None:
    product_id = stocked["product_id"]

    def item(**fields: Any) -> list[dict[str, Any]]:
        return [{"product_id": product_id, "quantity": 1, **fields}]

    cases: list[tuple[Any, int, str | None]] = [
        (order_body(stocked, items=item(quantity=0)), 422, "items.0.quantity"),
        (order_body(stocked, items=item(quantity=-3)), 422, "items.0.quantity"),
        (order_body(stocked, items=item(quantity=1001)), 422, "items.0.quantity"),
        (order_body(stocked, items=item(quantity="two")), 422, "items.0.quantity"),
        (order_body(stocked, items=item(quantity=1.5)), 422, "items.0.quantity"),
        (order_body(stocked, items=item(product_id="abc")), 422, "items.0.product_id"),
        (order_body(stocked, items=item(product_id=2**70)), 422, "items.0.product_id"),
        (order_body(stocked, items=[]), 422, "items"),
        (order_body(stocked, items="nope"), 422, "items"),
        (order_body(stocked, user_id=None), 422, "user_id"),
        (order_body(stocked, user_id=0), 422, "user_id"),
        (order_body(stocked, payment_method="GOLD"), 422, "payment_method"),
        (order_body(stocked, total_amount="0.01"), 422, "total_amount"),
        ({"items": item()}, 422, "user_id"),
        ([1, 2, 3], 422, None),
        ("just a string", 422, None),
        (order_body(stocked, items=item(product_id=10**12)), 404, "items.0.product_id"),
        (order_body(stocked, user_id=10**12), 404, "user_id"),
        (order_body(stocked, items=item(quantity=3)), 409, "items.0.quantity"),
        (order_body(stocked, items=[*item(), *item()]), 422, "items.1.product_id"),
    ]
    for body, status, field in cases:
        response = post(staff_client, "/api/orders", body)
        assert response.status_code == status, (body, response.content)
        error = assert_error(response, status)
        if field is not None:
            assert error["field"] == field, (body, error)
    assert Order.objects.count() == 0
    assert Inventory.objects.get(product_id=product_id).quantity == 2


@pytest.mark.django_db
def test_malformed_and_oversized_bodies_get_400(staff_client: Client, stocked: dict[str, int]) -> None:
    malformed = staff_client.post("/api/orders", "{not json", content_type="application/json")
    error = assert_error(malformed, 400, "malformed_json")
    assert error["message"].startswith("request body is not valid JSON: Expecting property name")
    empty = staff_client.post("/api/orders", "", content_type="application/json")
    assert 400 <= empty.status_code < 500
    assert "error" in empty.json()

    huge = order_body(stocked, items=[{"product_id": stocked["product_id"], "quantity": 1}] * 20_000)
    oversized = post(staff_client, "/api/orders", huge)
    assert_error(oversized, 400, "payload_too_large")
    too_many_lines = order_body(stocked, items=[{"product_id": n, "quantity": 1} for n in range(1, 102)])
    assert_error(post(staff_client, "/api/orders", too_many_lines), 422, field="items")


@pytest.mark.django_db
def test_a_body_nested_too_deeply_to_parse_gets_400_naming_it(
    staff_client: Client, stocked: dict[str, int], make_order: Callable[..., Order]
) -> None:
    # 100,000 nested arrays (200 KB, under the body size limit) go past the JSON parser's recursion.
    nested = "[" * 100_000 + "]" * 100_000
    order = make_order()
    for method, path, body in [
        ("POST", "/api/orders", order_body(stocked)),
        ("POST", "/api/users", {"email": "deep@example.com"}),
        ("PATCH", f"/api/orders/{order.pk}/status", {"status": "PAID"}),
    ]:
        text = json.dumps(body)[:-1] + ', "note": ' + nested + "}"
        response = staff_client.generic(method, path, text, content_type="application/json")
        error = assert_error(response, 400, "malformed_json")
        assert error["message"] == "request body is nested too deeply to parse", (path, error)
    assert Order.objects.count() == 1 and not Customer.objects.filter(email="deep@example.com").exists()


@pytest.mark.django_db
def test_status_change_errors(staff_client: Client, make_order: Callable[..., Order]) -> None:
    order = make_order()
    url = f"/api/orders/{order.pk}/status"
    assert_error(patch(staff_client, url, {"status": "DELIVERED"}), 409, "invalid_transition", "status")
    assert_error(patch(staff_client, url, {"status": "LOST"}), 422, field="status")
    assert_error(patch(staff_client, url, {"status": 3}), 422, field="status")
    assert_error(patch(staff_client, url, {}), 422, field="status")
    assert_error(patch(staff_client, url, {"status": "PAID", "version": 9}), 422, field="version")
    assert_error(patch(staff_client, "/api/orders/999999999/status", {"status": "PAID"}), 404, "not_found")
    assert_error(patch(staff_client, "/api/orders/abc/status", {"status": "PAID"}), 422, field="order_id")
    assert_error(patch(staff_client, "/api/orders/0/status", {"status": "PAID"}), 422, field="order_id")
    assert patch(staff_client, url, {"status": "CANCELLED"}).status_code == 200
    assert_error(patch(staff_client, url, {"status": "PAID"}), 409, "invalid_transition")


@pytest.mark.django_db
def test_read_endpoints_answer_404_and_422_in_the_error_shape(staff_client: Client) -> None:
    assert_error(staff_client.get("/api/orders/123456789"), 404, "not_found")
    assert_error(staff_client.get("/api/orders/abc"), 422, field="order_id")
    assert_error(staff_client.get(f"/api/orders/{2**64}"), 422, field="order_id")
    assert_error(staff_client.get("/api/products/123456789"), 404, "not_found")
    assert_error(staff_client.get("/api/users/123456789"), 404, "not_found")


@pytest.mark.django_db
def test_customer_and_product_writes_validate_and_refuse_duplicates(
    client: Client, staff_client: Client, admin: Admin
) -> None:
    assert_error(post(staff_client, "/api/users", {"email": "not-an-email"}), 422, field="email")
    assert_error(post(staff_client, "/api/users", {"name": "no email"}), 422, field="email")
    assert post(staff_client, "/api/users", {"email": "dup@example.com"}).status_code == 201
    assert_error(post(staff_client, "/api/users", {"email": "DUP@example.com"}), 409, field="email")

    auth = {"Authorization": f"Bearer {admin.token}"}
    good = {"sku": "P-1", "name": "Pen", "price": "1.20", "stock": 1}
    assert_error(post(client, "/api/products", good), 401, "not_authenticated")
    assert post(client, "/api/products", good, **auth).status_code == 201
    assert_error(post(client, "/api/products", good, **auth), 409, field="sku")
    for bad, field in [
        ({**good, "sku": "P-2", "price": "0"}, "price"),
        ({**good, "sku": "P-2", "price": "-1"}, "price"),
        ({**good, "sku": "P-2", "price": "1.234"}, "price"),
        ({**good, "sku": "P-2", "price": "1e20"}, "price"),
        ({**good, "sku": "P-2", "stock": -1}, "stock"),
        ({**good, "sku": ""}, "sku"),
    ]:
        assert_error(post(client, "/api/products", bad, **auth), 422, field=field)


@pytest.mark.django_db
def test_non_staff_cannot_change_the_catalogue(client: Client, make_admin: Callable[..., Admin]) -> None:
    former_staff = make_admin(is_staff=False)
    response = post(
        client,
        "/api/products",
        {"sku": "P-9", "name": "Pen", "price": "1.00"},
        Authorization=f"Bearer {former_staff.token}",
    )
    assert_error(response, 403, "forbidden")


@pytest.mark.django_db
def test_staff_without_the_add_product_permission_cannot_change_the_catalogue(
    client: Client, make_admin: Callable[..., Admin]
) -> None:
    clerk = make_admin(permissions=("orders.delete_order", "orders.change_product"))
    response = post(
        client,
        "/api/products",
        {"sku": "P-8", "name": "Pen", "price": "1.00"},
        Authorization=f"Bearer {clerk.token}",
    )
    assert "orders.add_product" in assert_error(response, 403, "permission_denied")["message"]
    assert not Product.objects.filter(sku="P-8").exists()


@pytest.mark.django_db
def test_openapi_document_lists_the_endpoints(client: Client) -> None:
    document = client.get("/api/openapi.json").json()
    paths = document["paths"]
    assert {"post", "get"} <= set(paths["/api/orders"])
    assert "patch" in paths["/api/orders/{order_id}/status"]
    assert "delete" in paths["/admin/orders/{order_id}"]
    assert client.get("/api/docs").status_code == 200


# A bearer token's first request: the token with its user and the user's permissions (its own and
# its groups', one query), and the token's last use (written at most once a minute).
CALLER_QUERIES = 2


@pytest.mark.django_db
def test_a_bearer_caller_and_its_permissions_cost_one_query(
    staff_client: Client, make_order: Callable[..., Order], django_assert_num_queries: Any
) -> None:
    order = make_order(quantity=1)
    assert staff_client.get(f"/api/orders/{order.pk}").status_code == 200  # writes the last use
    # The order with its items, customer and payment in 2; the caller and its permissions in 1.
    with django_assert_num_queries(2 + 1, exact=True):
        assert staff_client.get(f"/api/orders/{order.pk}").status_code == 200


@pytest.mark.django_db
def test_listing_a_page_of_orders_costs_a_fixed_number_of_queries(
    staff_client: Client, make_order: Callable[..., Order], django_assert_max_num_queries: Any
) -> None:
    for _ in range(12):
        make_order(quantity=1)
    # The page (with customer and payment), count, items; and CALLER_QUERIES for the caller.
    with django_assert_max_num_queries(3 + CALLER_QUERIES):
        page = staff_client.get("/api/orders", {"page_size": 100}).json()
    assert page["total"] == 12 and all(len(order["items"]) == 1 for order in page["items"])


@pytest.mark.django_db
def test_creating_an_order_reads_back_nothing_it_wrote(
    staff_client: Client,
    customer: Customer,
    make_product: Callable[..., Product],
    django_assert_num_queries: Callable[..., Any],
) -> None:
    mug, tee = make_product(price="4.50"), make_product(price="19.95")
    body = {
        "user_id": customer.pk,
        "items": [{"product_id": tee.pk, "quantity": 2}, {"product_id": mug.pk, "quantity": 1}],
        "payment_method": "PAYPAL",
    }
    # Seven statements: the customer, the products with their stock (one locking read), one stock
    # UPDATE for both lines, the order, its items, its payment and its outbox row; the response is
    # built from what is in hand. (+2: the test's transaction makes the service's atomic block a
    # savepoint; + CALLER_QUERIES to authenticate the caller.)
    with django_assert_num_queries(7 + 2 + CALLER_QUERIES, exact=True):
        created = post(staff_client, "/api/orders", body)

    assert created.status_code == 201, created.content
    order = created.json()
    assert staff_client.get(f"/api/orders/{order['order_id']}").json() == order
    assert OutboxEvent.objects.get(aggregate_id=str(order["order_id"])).payload == order
    assert [item["product_id"] for item in order["items"]] == [tee.pk, mug.pk]  # as they were added
    stock = dict(Inventory.objects.filter(product__in=[tee, mug]).values_list("product_id", "quantity"))
    assert stock == {tee.pk: 8, mug.pk: 9}


@pytest.mark.django_db
def test_lists_cannot_be_paged_or_counted_past_a_bound(
    staff_client: Client, make_order: Callable[..., Order], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orders import selectors

    error = assert_error(
        staff_client.get("/api/orders", {"page": 100_000, "page_size": 100}), 422, field="page"
    )
    assert str(selectors.MAX_LISTED) in error["message"]
    assert_error(staff_client.get("/api/users", {"page": 1_000_000}), 422, field="page")
    monkeypatch.setattr(selectors, "MAX_LISTED", 2)
    for _ in range(3):
        make_order()
    page = staff_client.get("/api/orders", {"page_size": 2}).json()
    assert (page["total"], page["total_is_exact"], len(page["items"])) == (2, False, 2)
    assert_error(staff_client.get("/api/orders", {"page": 2, "page_size": 2}), 422, field="page")


@pytest.mark.django_db
def test_wrong_methods_and_unknown_paths_answer_in_the_error_shape(client: Client) -> None:
    not_allowed = client.put("/api/orders", "{}", content_type="application/json")
    assert_error(not_allowed, 405, "method_not_allowed")
    assert set(not_allowed["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert_error(client.get("/api/no-such-thing"), 404, "not_found")
    assert_error(client.get("/admin/orders/1"), 405, "method_not_allowed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_writes_need_a_json_body(
    client: Client, admin: Admin, stocked: dict[str, int], content_type: str
) -> None:
    # A cross-site form can send these without a CORS preflight: they must not create anything.
    body = json.dumps(
        {"user_id": stocked["user_id"], "items": [{"product_id": stocked["product_id"], "quantity": 1}]}
    )
    created = client.generic("POST", "/api/orders", body, content_type=content_type)
    assert_error(created, 415, "unsupported_media_type")
    product = client.generic(
        "POST",
        "/api/products",
        json.dumps({"sku": "P-415", "name": "Pen", "price": "1.00"}),
        content_type=content_type,
        headers={"Authorization": f"Bearer {admin.token}"},
    )
    assert_error(product, 415)
    assert not Order.objects.exists() and not Product.objects.filter(sku="P-415").exists()
    assert (
        post(
            client,
            "/api/products",
            {"sku": "P-416", "name": "Pen", "price": "1.00"},
            Authorization=f"Bearer {admin.token}",
        ).status_code
        == 201
    )
