"""Reads of the orders app. Order reads prefetch items, payment and customer, so serializing a page
of orders costs a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Model, QuerySet

from backend.errors import InvalidInput, NotFound
from orders.models import AdminApiToken, Customer, Order, Product

M = TypeVar("M", bound=Model)

# How deep a list may be paged, and how far its total is counted: OFFSET and COUNT(*) cost grows
# with the rows they pass, so one request must not be able to walk the whole table.
MAX_LISTED = 10_000


@dataclass(frozen=True)
class Page(Generic[M]):
    items: list[M]
    total: int
    total_is_exact: bool
    page: int
    page_size: int


def _page(queryset: QuerySet[M], *, page: int, page_size: int) -> Page[M]:
    start = (page - 1) * page_size
    if start + page_size > MAX_LISTED:
        raise InvalidInput(
            f"page {page} of {page_size} reaches past the first {MAX_LISTED} rows; narrow the filters",
            field="page",
        )
    # Counted over at most MAX_LISTED + 1 rows: a page never costs a scan of the whole table.
    counted = queryset.order_by()[: MAX_LISTED + 1].count()
    return Page(
        items=list(queryset[start : start + page_size]),
        total=min(counted, MAX_LISTED),
        total_is_exact=counted <= MAX_LISTED,
        page=page,
        page_size=page_size,
    )


def _orders_with_details() -> QuerySet[Order]:
    return Order.objects.select_related("user", "payment").prefetch_related("items")


def order_get(*, order_id: int) -> Order:
    order = _orders_with_details().filter(pk=order_id).first()
    if order is None:
        raise NotFound(f"order {order_id} does not exist", field="order_id")
    return order


def order_list(
    *,
    user_id: int | None = None,
    status: str | None = None,
    include_deleted: bool = False,
    page: int = 1,
    page_size: int = 20,
) -> Page[Order]:
    orders = _orders_with_details().order_by("-id")
    if user_id is not None:
        orders = orders.filter(user_id=user_id)
    if status is not None:
        orders = orders.filter(status=status)
    if not include_deleted:
        orders = orders.filter(deleted_at__isnull=True)
    return _page(orders, page=page, page_size=page_size)


def customer_get(*, customer_id: int) -> Customer:
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        raise NotFound(f"customer {customer_id} does not exist", field="user_id")
    return customer


def customer_list(*, page: int = 1, page_size: int = 20) -> Page[Customer]:
    return _page(Customer.objects.order_by("id"), page=page, page_size=page_size)


def _products_with_stock() -> QuerySet[Product]:
    return Product.objects.select_related("inventory")


def product_get(*, product_id: int) -> Product:
    product = _products_with_stock().filter(pk=product_id).first()
    if product is None:
        raise NotFound(f"product {product_id} does not exist", field="product_id")
    return product


def product_list(*, active_only: bool = False, page: int = 1, page_size: int = 20) -> Page[Product]:
    products = _products_with_stock().order_by("id")
    if active_only:
        products = products.filter(is_active=True)
    return _page(products, page=page, page_size=page_size)


def admin_token_of(*, token_digest: str) -> AdminApiToken | None:
    """The unrevoked token with this digest whose user is active, or None."""
    return (
        AdminApiToken.objects.select_related("user")
        .filter(token_hash=token_digest, revoked_at__isnull=True, user__is_active=True)
        .first()
    )


def user_by_username(*, username: str) -> AbstractBaseUser | None:
    user: AbstractBaseUser | None = get_user_model().objects.filter(username=username).first()
    return user
