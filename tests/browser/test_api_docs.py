"""The API docs README points to, opened in a real browser: Swagger UI renders the operations list
from this server alone (no CDN), and "Try it out" on GET /api/orders answers 200."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from orders.models import Order
from tests.browser.conftest import Browser, shows

pytestmark = pytest.mark.slow

LIST_ORDERS = "#operations-orders-orders_api_list_orders"


def _operation_paths(driver: Any) -> set[str]:
    from selenium.webdriver.common.by import By

    return {
        e.text.replace("\u200b", "") for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }


def test_docs_render_the_operations_from_this_server_alone(browser: Browser) -> None:
    browser.visit("api-docs", shows("/api/orders", ".opblock-summary-path"), "/api/docs")

    assert "Outbox analytics pipeline" in browser.text(".information-container")
    paths = _operation_paths(browser.driver)
    assert {"/api/orders", "/api/orders/{order_id}", "/admin/orders/{order_id}", "/readyz"} <= paths
    # Every request the page made went to the server under test: the docs work offline.
    assert any("/static/" in url for url in browser.requests)
    assert any(url.endswith("/api/openapi.json") for url in browser.requests)


def test_try_it_out_lists_orders(logged_in: Browser, make_order: Callable[..., Order]) -> None:
    order = make_order()
    browser = logged_in
    browser.visit("api-docs", shows("/api/orders", ".opblock-summary-path"), "/api/docs")

    browser.click(f"{LIST_ORDERS} .opblock-summary")
    browser.visit("api-docs-list-orders", shows("Try it out", f"{LIST_ORDERS} .try-out__btn"))
    browser.click(f"{LIST_ORDERS} .try-out__btn")
    browser.click(f"{LIST_ORDERS} .execute")
    browser.visit(
        "api-docs-list-orders-200",
        shows("200", f"{LIST_ORDERS} .live-responses-table tbody .response-col_status"),
    )

    body = browser.text(f"{LIST_ORDERS} .live-responses-table tbody .response-col_description")
    assert f'"order_id": {order.pk}' in body
