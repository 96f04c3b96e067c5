"""Django admin in a real browser, as staff: soft-delete an order and find its OrderDeleted outbox
row; retry a parked event and see it published by the relay (run in this process against the
shared Kafka cluster, on a topic of the test's own)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from orders.models import Order
from outbox.models import OutboxEvent, OutboxStatus
from outbox.relay import relay_run
from tests.browser.conftest import Browser, shows

pytestmark = pytest.mark.slow


def test_soft_delete_an_order_and_see_its_outbox_row(
    logged_in: Browser, make_order: Callable[..., Order]
) -> None:
    order = make_order()
    browser = logged_in
    browser.visit("orders", shows(order.user.email, "#result_list"), "/admin/orders/order/")

    browser.click(f"#result_list a[href$='/admin/orders/order/{order.pk}/change/']")
    browser.visit("order-change", shows("Delete", ".deletelink"))
    browser.click(".deletelink")
    browser.visit("order-delete-confirm", shows("soft delete", "#content"))
    browser.click("#content form input[type=submit]")
    browser.visit("orders-after-delete", shows("deleted successfully", ".messagelist"))

    browser.visit(
        "outbox-deleted-row",
        shows("OrderDeleted", "#result_list"),
        f"/admin/outbox/outboxevent/?q={order.pk}",
    )
    rows = [row.text for row in browser.driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")]
    assert any("OrderDeleted" in row and "Pending" in row for row in rows), rows
    order.refresh_from_db()
    assert order.deleted_at is not None


@pytest.mark.kafka
def test_retry_a_parked_event_and_see_it_published(
    logged_in: Browser, make_order: Callable[..., Order], make_topic: Callable[..., str]
) -> None:
    order = make_order()
    event = OutboxEvent.objects.get(aggregate_id=str(order.pk))
    # Parked the way the relay parks an event that exhausted its attempts.
    OutboxEvent.objects.filter(pk=event.pk).update(
        status=OutboxStatus.FAILED, attempts=10, last_error="KafkaTimeoutError: broker unavailable"
    )
    browser = logged_in
    browser.visit("outbox-parked", shows("Failed (parked)", "#result_list"), "/admin/outbox/outboxevent/")

    browser.driver.find_element(By.CSS_SELECTOR, f"#result_list input[value='{event.pk}']").click()
    Select(browser.driver.find_element(By.NAME, "action")).select_by_value("retry_parked")
    browser.click("button[name=index]")
    browser.visit("outbox-retried", shows("queued for another attempt", ".messagelist"))

    result = relay_run(topic=make_topic("order-events"))
    assert result.published >= 1

    browser.visit("outbox-published", shows("Published", "#result_list"), "/admin/outbox/outboxevent/")
    event.refresh_from_db()
    assert event.status == OutboxStatus.PUBLISHED and event.published_at is not None
