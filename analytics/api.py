"""The analytics API, mounted at /api/analytics: thin endpoints over analytics/selectors.py.

Date ranges are whole UTC days, `date_from` to `date_to` inclusive, at most 366 days; a range
that ends before it starts, a bad date or a wider range is refused with 422.

The aggregates are public; the per-customer endpoints return customers' emails, so they need an
authenticated staff caller holding orders.view_customer, as the customer routes of the orders API
do."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.http import HttpRequest
from ninja import Path, Query, Router

from analytics import selectors
from analytics.freshness import dashboard_as_of
from analytics.schemas import (
    DEFAULT_RANGE_DAYS,
    MAX_RANGE_DAYS,
    DailySalesOut,
    DateRangeQuery,
    HourlyOrdersOut,
    LimitQuery,
    OverviewOut,
    StatusDistributionOut,
    TopProductsOut,
    UserListOut,
    UserStatsOut,
)
from backend.errors import ErrorOut, InvalidInput, NotFound
from orders.auth import require_permission, staff_auth
from orders.schemas import MAX_ID

router = Router(tags=["analytics"])
ERRORS = {422: ErrorOut, 503: ErrorOut}
PERSONAL_DATA_ERRORS = {**ERRORS, 401: ErrorOut, 403: ErrorOut}


def date_range(query: DateRangeQuery) -> tuple[date, date]:
    date_to = query.date_to or datetime.now(UTC).date()
    date_from = query.date_from or date_to - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if date_from > date_to:
        raise InvalidInput(f"date_from {date_from} is after date_to {date_to}", field="date_from")
    if (date_to - date_from).days + 1 > MAX_RANGE_DAYS:
        raise InvalidInput(
            f"the range covers {(date_to - date_from).days + 1} days; at most {MAX_RANGE_DAYS} are allowed",
            field="date_to",
        )
    return date_from, date_to


@router.get("/daily-sales", response={200: DailySalesOut, **ERRORS})
def daily_sales(request: HttpRequest, query: Query[DateRangeQuery]) -> dict[str, Any]:
    date_from, date_to = date_range(query)
    as_of = dashboard_as_of()  # before the figures: see dashboard_as_of
    items = selectors.daily_sales(date_from=date_from, date_to=date_to)
    return {"date_from": date_from, "date_to": date_to, "items": items, "as_of": as_of}


@router.get("/hourly-orders", response={200: HourlyOrdersOut, **ERRORS})
def hourly_orders(request: HttpRequest, query: Query[DateRangeQuery]) -> dict[str, Any]:
    date_from, date_to = date_range(query)
    as_of = dashboard_as_of()
    items = selectors.hourly_orders(date_from=date_from, date_to=date_to)
    return {"date_from": date_from, "date_to": date_to, "items": items, "as_of": as_of}


@router.get("/status-distribution", response={200: StatusDistributionOut, 503: ErrorOut})
def status_distribution(request: HttpRequest) -> dict[str, Any]:
    as_of = dashboard_as_of()
    return {"items": selectors.status_distribution(), "as_of": as_of}


@router.get("/users", response={200: UserListOut, **PERSONAL_DATA_ERRORS}, auth=staff_auth)
def top_customers(request: HttpRequest, query: Query[LimitQuery]) -> dict[str, Any]:
    """Customers by money spent (cancelled and refunded orders excluded)."""
    require_permission(request, "orders.view_customer")
    as_of = dashboard_as_of()
    return {"items": selectors.top_customers(limit=query.limit), "as_of": as_of}


@router.get(
    "/users/{user_id}", response={200: UserStatsOut, 404: ErrorOut, **PERSONAL_DATA_ERRORS}, auth=staff_auth
)
def user_stats(request: HttpRequest, user_id: int = Path(..., ge=1, le=MAX_ID)) -> dict[str, Any]:
    require_permission(request, "orders.view_customer")
    as_of = dashboard_as_of()
    stats = selectors.user_stats(user_id=user_id)
    if stats is None:
        raise NotFound(f"no analytics for user {user_id}: no active orders (yet)", field="user_id")
    return {**stats, "as_of": as_of}


@router.get("/top-products", response={200: TopProductsOut, **ERRORS})
def top_products(request: HttpRequest, query: Query[LimitQuery]) -> dict[str, Any]:
    as_of = dashboard_as_of()
    return {"items": selectors.top_products(limit=query.limit), "as_of": as_of}


@router.get("/overview", response={200: OverviewOut, **ERRORS})
def overview(request: HttpRequest, query: Query[DateRangeQuery]) -> dict[str, Any]:
    date_from, date_to = date_range(query)
    as_of = dashboard_as_of()
    return {**selectors.overview(date_from=date_from, date_to=date_to), "as_of": as_of}
