"""Reads of the orders app. Order reads prefetch items, payment and customer, so serializing a page
of orders costs a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from functools import cache
from typing import Any, Generic, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Model, QuerySet
from django.utils import timezone

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
    """The unrevoked token with this digest whose user is active, or None; its ``user`` comes with
    the permissions the user holds itself and through its groups, all in one query.

    The permissions are what Django's ModelBackend would load with two more queries when a route
    checks ``user.has_perm``; they are placed where it caches them for this user object, which lives
    for this request only, so a permission taken away applies from the next request on."""
    # The user's own columns are converted by the ORM; the rest are the row's extra attributes.
    rows: list[Any] = list(get_user_model().objects.raw(_caller_sql(), [token_digest] * 2))
    if not rows:
        return None
    user = rows[0]
    last_used = rows[0].caller_token_last_used
    if last_used is not None and timezone.is_naive(last_used):  # stored in UTC, as the ORM reads it
        last_used = timezone.make_aware(last_used, UTC)
    token = AdminApiToken.from_db(connection.alias, ["id", "user_id", "last_used_at"],
                                  [rows[0].caller_token_id, user.pk, last_used])  # fmt: skip
    token.user = user
    if not getattr(user, "is_superuser", False):  # a superuser's has_perm needs no permission list
        held: dict[str, set[str]] = {"user": set(), "group": set()}
        for row in rows:
            if row.caller_permission_app is not None:
                held[row.caller_permission_source].add(f"{row.caller_permission_app}.{row.caller_permission}")
        user._user_perm_cache = held["user"]
        user._group_perm_cache = held["group"]
    return token


# The token's user, with the token's id and last use and a row per permission the user holds (its
# source, 'user' or 'group', app label and codename; NULLs in one row when it holds none itself).
# Two halves of one UNION, each led by the token's unique digest, so every join is an index lookup.
_CALLER_SQL = """
    SELECT u.*, t.id AS caller_token_id, t.last_used_at AS caller_token_last_used,
           'user' AS caller_permission_source, ct.app_label AS caller_permission_app,
           p.codename AS caller_permission
    FROM {tokens} t
    JOIN {users} u ON u.{user_pk} = t.user_id
    LEFT JOIN {own} o ON o.{own_user} = u.{user_pk}
    LEFT JOIN {permissions} p ON p.id = o.{own_permission}
    LEFT JOIN {content_types} ct ON ct.id = p.content_type_id
    WHERE t.token_hash = %s AND t.revoked_at IS NULL AND u.is_active
    UNION ALL
    SELECT u.*, t.id, t.last_used_at, 'group', ct.app_label, p.codename
    FROM {tokens} t
    JOIN {users} u ON u.{user_pk} = t.user_id
    JOIN {members} m ON m.{member_user} = u.{user_pk}
    JOIN {grants} g ON g.{grant_group} = m.{member_group}
    JOIN {permissions} p ON p.id = g.{grant_permission}
    JOIN {content_types} ct ON ct.id = p.content_type_id
    WHERE t.token_hash = %s AND t.revoked_at IS NULL AND u.is_active
"""


@cache
def _caller_sql() -> str:
    """_CALLER_SQL with the tables and columns of the models (the user model may be swapped), built
    once per process: it is on the path of every authenticated request."""
    quote = connection.ops.quote_name
    users = get_user_model()._meta
    names = {
        "tokens": quote(AdminApiToken._meta.db_table),
        "users": quote(users.db_table),
        "user_pk": quote(users.pk.column),
        "permissions": quote(Permission._meta.db_table),
        "content_types": quote(ContentType._meta.db_table),
    }
    own, members = users.get_field("user_permissions"), users.get_field("groups")
    grants = Group._meta.get_field("permissions")
    names.update(
        own=quote(own.m2m_db_table()),
        own_user=quote(own.m2m_column_name()),
        own_permission=quote(own.m2m_reverse_name()),
        members=quote(members.m2m_db_table()),
        member_user=quote(members.m2m_column_name()),
        member_group=quote(members.m2m_reverse_name()),
        grants=quote(grants.m2m_db_table()),
        grant_group=quote(grants.m2m_column_name()),
        grant_permission=quote(grants.m2m_reverse_name()),
    )
    return _CALLER_SQL.format(**names)


def user_by_username(*, username: str) -> AbstractBaseUser | None:
    user: AbstractBaseUser | None = get_user_model().objects.filter(username=username).first()
    return user
