"""Orders HTTP API (django-ninja): thin endpoints that validate, call one service, serialize.

``router`` is mounted at /api (orders, customers, products); ``admin_router`` at /admin (the admin
DELETE API, next to Django admin's own pages under /admin/).

Every order carries its customer's email, so every order and customer route is personal data:
it needs an authenticated staff caller (``staff_auth``) holding the model permission Django admin
asks for the same read or change. The catalogue's reads stay public."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Header, Path, Query, Router
from ninja.responses import Status

from backend.errors import ErrorOut
from orders import selectors, services
from orders.auth import ADMIN_ID_HEADER, admin_identity, require_permission, staff_auth
from orders.models import Customer, Product
from orders.schemas import (
    MAX_ID,
    CustomerIn,
    CustomerOut,
    CustomerPageOut,
    OrderIn,
    OrderOut,
    OrderPageOut,
    OrderQuery,
    OrderStatusIn,
    PageQuery,
    ProductIn,
    ProductOut,
    ProductPageOut,
    ProductQuery,
)
from orders.selectors import Page
from orders.snapshots import money, order_snapshot

router = Router(tags=["orders"])
admin_router = Router(tags=["admin"])

ObjectId = Path(..., ge=1, le=MAX_ID)

BAD_INPUT: dict[int, Any] = {400: ErrorOut, 422: ErrorOut}
STAFF_ERRORS: dict[int, Any] = {**BAD_INPUT, 401: ErrorOut, 403: ErrorOut}


def _customer_out(customer: Customer) -> dict[str, Any]:
    return {"id": customer.pk, "email": customer.email, "name": customer.name}


def _product_out(product: Product) -> dict[str, Any]:
    return {
        "id": product.pk,
        "sku": product.sku,
        "name": product.name,
        "price": money(product.price),
        "is_active": product.is_active,
        "stock": product.inventory.quantity,
    }


def _page_out(page: Page[Any], serialize: Any) -> dict[str, Any]:
    return {
        "items": [serialize(item) for item in page.items],
        "total": page.total,
        "total_is_exact": page.total_is_exact,
        "page": page.page,
        "page_size": page.page_size,
    }


# --- orders -------------------------------------------------------------------------------------


@router.post(
    "/orders", response={201: OrderOut, 404: ErrorOut, 409: ErrorOut, **STAFF_ERRORS}, auth=staff_auth
)
def create_order(request: HttpRequest, payload: OrderIn) -> Status[dict[str, Any]]:
    require_permission(request, "orders.add_order")
    order = services.order_create(
        user_id=payload.user_id,
        lines=[services.OrderLine(product_id=i.product_id, quantity=i.quantity) for i in payload.items],
        payment_method=payload.payment_method,
    )
    # The service hands back the order with its items, payment and customer in hand: serializing
    # it reads nothing again.
    return Status(201, order_snapshot(order))


# Deleted orders need no more than the others: Django admin, too, lists them to anyone who may
# view orders (its "deleted" filter).
@router.get("/orders", response={200: OrderPageOut, **STAFF_ERRORS}, auth=staff_auth)
def list_orders(request: HttpRequest, query: Query[OrderQuery]) -> dict[str, Any]:
    require_permission(request, "orders.view_order")
    page = selectors.order_list(
        user_id=query.user_id,
        status=query.status,
        include_deleted=query.include_deleted,
        page=query.page,
        page_size=query.page_size,
    )
    return _page_out(page, order_snapshot)


@router.get("/orders/{order_id}", response={200: OrderOut, 404: ErrorOut, **STAFF_ERRORS}, auth=staff_auth)
def get_order(request: HttpRequest, order_id: int = ObjectId) -> dict[str, Any]:
    require_permission(request, "orders.view_order")
    return order_snapshot(selectors.order_get(order_id=order_id))


@router.patch(
    "/orders/{order_id}/status",
    response={200: OrderOut, 404: ErrorOut, 409: ErrorOut, **STAFF_ERRORS},
    auth=staff_auth,
)
def change_order_status(
    request: HttpRequest, payload: OrderStatusIn, order_id: int = ObjectId
) -> dict[str, Any]:
    require_permission(request, "orders.change_order")
    services.order_status_change(order_id=order_id, status=payload.status)
    return order_snapshot(selectors.order_get(order_id=order_id))


# --- customers (the shop's users) ---------------------------------------------------------------


@router.post(
    "/users", response={201: CustomerOut, 409: ErrorOut, **STAFF_ERRORS}, auth=staff_auth, tags=["users"]
)
def create_customer(request: HttpRequest, payload: CustomerIn) -> Status[dict[str, Any]]:
    require_permission(request, "orders.add_customer")
    return Status(201, _customer_out(services.customer_create(email=payload.email, name=payload.name)))


@router.get("/users", response={200: CustomerPageOut, **STAFF_ERRORS}, auth=staff_auth, tags=["users"])
def list_customers(request: HttpRequest, query: Query[PageQuery]) -> dict[str, Any]:
    require_permission(request, "orders.view_customer")
    return _page_out(selectors.customer_list(page=query.page, page_size=query.page_size), _customer_out)


@router.get(
    "/users/{user_id}",
    response={200: CustomerOut, 404: ErrorOut, **STAFF_ERRORS},
    auth=staff_auth,
    tags=["users"],
)
def get_customer(request: HttpRequest, user_id: int = ObjectId) -> dict[str, Any]:
    require_permission(request, "orders.view_customer")
    return _customer_out(selectors.customer_get(customer_id=user_id))


# --- products (the catalogue is staff-managed: writes need staff credentials, reads are public) -


@router.post(
    "/products", response={201: ProductOut, 409: ErrorOut, **STAFF_ERRORS}, auth=staff_auth, tags=["products"]
)
def create_product(request: HttpRequest, payload: ProductIn) -> Status[dict[str, Any]]:
    require_permission(request, "orders.add_product")
    product = services.product_create(
        sku=payload.sku,
        name=payload.name,
        price=payload.price,
        stock=payload.stock,
        is_active=payload.is_active,
    )
    return Status(201, _product_out(selectors.product_get(product_id=product.pk)))


@router.get("/products", response={200: ProductPageOut, **BAD_INPUT}, tags=["products"])
def list_products(request: HttpRequest, query: Query[ProductQuery]) -> dict[str, Any]:
    page = selectors.product_list(active_only=query.active_only, page=query.page, page_size=query.page_size)
    return _page_out(page, _product_out)


@router.get(
    "/products/{product_id}", response={200: ProductOut, 404: ErrorOut, **BAD_INPUT}, tags=["products"]
)
def get_product(request: HttpRequest, product_id: int = ObjectId) -> dict[str, Any]:
    return _product_out(selectors.product_get(product_id=product_id))


# --- admin API ----------------------------------------------------------------------------------


# {int:...}: only numeric ids reach this endpoint, so Django admin's own pages under
# /admin/orders/ (e.g. /admin/orders/order/) never match it.
@admin_router.delete(
    "/orders/{int:order_id}", response={200: OrderOut, 404: ErrorOut, **STAFF_ERRORS}, auth=staff_auth
)
def delete_order(
    request: HttpRequest,
    order_id: int = ObjectId,
    x_admin_id: str | None = Header(
        None,
        alias=ADMIN_ID_HEADER,
        description="The numeric user id of the authenticated staff user; recorded as deleted_by.",
    ),
) -> dict[str, Any]:
    """Soft-deletes an order (idempotent: a repeated DELETE answers 200 and writes no new event)."""
    admin_id = admin_identity(request, x_admin_id, "orders.delete_order")
    services.order_soft_delete(order_id=order_id, deleted_by=admin_id)
    return order_snapshot(selectors.order_get(order_id=order_id))
