"""The analytics API against real ClickHouse (the run's chDB engine, a fresh database per test):
every endpoint returns what its view holds, deleted orders never show, and bad ranges get 422."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from analytics import clickhouse as analytics_clickhouse
from consumers.sink import ClickHouseWriter
from consumers.transformer import transform
from contract.events import decode_envelope
from tests.consumers.factories import base_order, history, kafka_value
from tests.orders.conftest import API_PERMISSIONS, Admin
from warehouse.schema import migrate


@pytest.fixture
def api(clickhouse_client: Any, clickhouse_database: str, settings: Any) -> Iterator[Client]:
    """The Django client, with the analytics API reading this test's ClickHouse database through
    the run's one chDB engine (a second engine on the directory could not be opened)."""
    migrate(clickhouse_client, clickhouse_database)
    settings.CLICKHOUSE_DATABASE = clickhouse_database
    analytics_clickhouse._local.client = clickhouse_client
    yield Client()
    analytics_clickhouse._local.client = None


def load(client: Any, database: str, events: list[dict[str, Any]]) -> None:
    """Through the sink's own writer, as the pipeline would: the views hold what it wrote."""
    ClickHouseWriter(client, database).write([transform(decode_envelope(kafka_value(e))) for e in events])


@pytest.fixture
def orders(api: Client, clickhouse_client: Any, clickhouse_database: str) -> None:
    day1 = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    day2 = datetime(2026, 11, 21, 15, 5, tzinfo=UTC)
    events = (
        history(base_order(1, user_id=7, created_at=day1), ["PAID"], None)
        + history(base_order(2, user_id=7, created_at=day1), [], None)
        + history(base_order(3, user_id=8, created_at=day2), ["CANCELLED"], None)
        # Deleted: must show nowhere.
        # Deleted an hour ago, inside the 7-day TTL on any day the test runs: the views must hide
        # it, not merely the purge of an expired delete.
        + history(base_order(4, user_id=9, created_at=day2), [], datetime.now(UTC) - timedelta(hours=1))
    )
    load(clickhouse_client, clickhouse_database, events)


RANGE = "date_from=2026-11-01&date_to=2026-11-30"


@pytest.fixture
def customer_viewer(make_admin: Any) -> dict[str, str]:
    """The credentials of a staff user who may view customers: the per-customer endpoints serve
    their emails."""
    viewer: Admin = make_admin(permissions=("orders.view_customer",))
    return {"Authorization": f"Bearer {viewer.token}"}


def test_daily_sales_counts_paying_orders_per_day(api: Client, orders: None) -> None:
    response = api.get(f"/api/analytics/daily-sales?{RANGE}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["date_from"] == "2026-11-01" and body["date_to"] == "2026-11-30"
    # base_order: 2 x 10.50 per order; order 3 is cancelled and order 4 deleted.
    assert body["items"] == [
        {"date": "2026-11-20", "orders_count": 2, "revenue": "42.00", "items_sold": 4, "unique_customers": 1}
    ]
    outside = api.get("/api/analytics/daily-sales?date_from=2026-11-21&date_to=2026-11-22").json()
    assert outside["items"] == []


def test_hourly_orders_and_status_distribution(api: Client, orders: None) -> None:
    hourly = api.get(f"/api/analytics/hourly-orders?{RANGE}").json()["items"]
    assert [(row["hour"][:13], row["orders_count"], row["revenue"]) for row in hourly] == [
        ("2026-11-20T10", 2, "42.00")
    ]
    statuses = api.get("/api/analytics/status-distribution").json()["items"]
    assert {row["status"]: (row["orders_count"], row["total_amount"]) for row in statuses} == {
        "PAID": (1, "21.00"),
        "PENDING": (1, "21.00"),
        "CANCELLED": (1, "21.00"),
    }


@pytest.mark.django_db
def test_user_stats_top_customers_products_and_overview(
    api: Client, orders: None, customer_viewer: dict[str, str]
) -> None:
    user = api.get("/api/analytics/users/7", headers=customer_viewer).json()
    assert (user["user_id"], user["orders_count"], user["paying_orders_count"], user["total_spent"]) == (
        7, 2, 2, "42.00"
    )  # fmt: skip
    assert (
        api.get("/api/analytics/users/9", headers=customer_viewer).status_code == 404
    )  # only a deleted order
    top = api.get("/api/analytics/users?limit=1", headers=customer_viewer).json()["items"]
    assert [row["user_id"] for row in top] == [7]

    products = api.get("/api/analytics/top-products?limit=10").json()["items"]
    assert sum(row["units_sold"] for row in products) == 4
    assert sum(float(row["revenue"]) for row in products) == 42.0

    overview = api.get(f"/api/analytics/overview?{RANGE}").json()
    assert (overview["orders_count"], overview["revenue"], overview["items_sold"]) == (2, "42.00", 4)
    assert len(overview["status_distribution"]) == 3
    assert overview["top_products"] == products[:5]


def test_default_range_is_the_last_30_days(api: Client) -> None:
    before = datetime.now(UTC).date()
    body = api.get("/api/analytics/daily-sales").json()
    after = datetime.now(UTC).date()  # the request may cross midnight
    date_to = datetime.fromisoformat(body["date_to"]).date()
    assert date_to in (before, after)
    assert (date_to - datetime.fromisoformat(body["date_from"]).date()).days == 29
    assert body["items"] == []


@pytest.mark.parametrize(
    ("query", "field", "fragment"),
    [
        ("date_from=2026-11-30&date_to=2026-11-01", "date_from", "is after date_to"),
        ("date_from=2025-01-01&date_to=2026-11-30", "date_to", "at most 366"),
        ("date_from=2026-13-01", "date_from", "valid date"),
        ("date_from=yesterday", "date_from", "valid date"),
        ("date_to=2026-02-30", "date_to", "valid date"),
        # Outside ClickHouse's Date range; date_to=0001-01-01 once overflowed the default date_from.
        ("date_to=0001-01-01", "date_to", "greater than or equal to 1970-01-01"),
        ("date_from=2200-01-01", "date_from", "less than or equal to 2149-06-06"),
    ],
)
def test_bad_date_ranges_are_refused_with_422(api: Client, query: str, field: str, fragment: str) -> None:
    for endpoint in ("daily-sales", "hourly-orders", "overview"):
        response = api.get(f"/api/analytics/{endpoint}?{query}")
        assert response.status_code == 422, (endpoint, response.content)
        error = response.json()["error"]
        assert error["code"] == "invalid_input"
        assert fragment.lower() in str(error).lower(), error
        assert error["field"] == field


@pytest.mark.parametrize(
    "path",
    ["/api/analytics/users/0", "/api/analytics/users?limit=0", "/api/analytics/top-products?limit=1000"],
)
@pytest.mark.django_db
def test_bad_ids_and_limits_are_refused_with_422(
    api: Client, path: str, customer_viewer: dict[str, str]
) -> None:
    assert api.get(path, headers=customer_viewer).status_code == 422


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/analytics/users?limit=5", "/api/analytics/users/7"])
def test_customer_analytics_need_a_staff_caller_who_may_view_customers(
    api: Client, orders: None, make_admin: Any, path: str
) -> None:
    anonymous = api.get(path)
    assert anonymous.status_code == 401, anonymous.content
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    assert "user7@example.com" not in anonymous.content.decode()

    clerk: Admin = make_admin(permissions=tuple(p for p in API_PERMISSIONS if p != "orders.view_customer"))
    refused = api.get(path, headers={"Authorization": f"Bearer {clerk.token}"})
    assert refused.status_code == 403, refused.content
    error = refused.json()["error"]
    assert error["code"] == "permission_denied" and "orders.view_customer" in error["message"]
    assert "user7@example.com" not in refused.content.decode()

    viewer: Admin = make_admin(permissions=("orders.view_customer",))
    served = api.get(path, headers={"Authorization": f"Bearer {viewer.token}"})
    assert served.status_code == 200, served.content
    assert "user7@example.com" in served.content.decode()


def test_the_aggregates_stay_public(api: Client, orders: None) -> None:
    for path in ("daily-sales", "hourly-orders", "status-distribution", "top-products", "overview"):
        response = api.get(f"/api/analytics/{path}?{RANGE}")  # status-distribution ignores the range
        assert response.status_code == 200, (path, response.content)
        assert "@example.com" not in response.content.decode()


def test_an_unreachable_clickhouse_is_a_503_in_the_error_shape(settings: Any) -> None:
    settings.CLICKHOUSE_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    analytics_clickhouse._local.client = None
    response = Client().get("/api/analytics/status-distribution")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "analytics_unavailable"


ENDPOINTS = [
    f"/api/analytics/daily-sales?{RANGE}",
    f"/api/analytics/hourly-orders?{RANGE}",
    "/api/analytics/status-distribution",
    "/api/analytics/users",
    "/api/analytics/users/7",
    "/api/analytics/top-products",
    f"/api/analytics/overview?{RANGE}",
]


@pytest.mark.django_db
def test_every_response_says_as_of_the_watermark_the_views_hold(
    api: Client,
    clickhouse_client: Any,
    clickhouse_database: str,
    orders: None,
    customer_viewer: dict[str, str],
) -> None:
    # No check of the pipeline recorded yet: unknown, not a guess.
    assert all(api.get(url, headers=customer_viewer).json()["as_of"] is None for url in ENDPOINTS)

    db = clickhouse_database
    now = datetime.now(UTC)
    # Whole milliseconds: the JSON has no finer ones (rounding down, so never too new).
    held = (now - timedelta(seconds=30)).replace(microsecond=now.microsecond // 1000 * 1000)
    older = now - timedelta(seconds=60)
    rows = [[now - timedelta(seconds=40), older], [now - timedelta(seconds=20), held]]
    clickhouse_client.insert(
        f"{db}.pipeline_watermark", rows, column_names=["checked_at", "watermark"],
        settings={"async_insert": 0},
    )  # fmt: skip
    # The views are written with the table, before the commit a check sees: the latest check holds.
    for url in ENDPOINTS:
        body = api.get(url, headers=customer_viewer).json()
        assert datetime.fromisoformat(body["as_of"].replace("Z", "+00:00")) == held, (url, body)

    metrics = Client().get("/metrics").content.decode()
    lag = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("pipeline_freshness_lag_seconds")
    )
    assert 30 <= lag < 90
