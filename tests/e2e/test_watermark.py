"""The freshness watermark end to end: with the sink stopped it stops advancing while commits go
on, and once the sink is back it catches up to within a second of the last commit."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from django.db.models import Max

from outbox.models import OutboxEvent
from scripts.pipeline_checks import Api, admin_headers
from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.django_db(transaction=True)


def as_of(api: Api) -> datetime | None:
    value = api.call("GET", "/api/analytics/status-distribution")["as_of"]
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def last_commit() -> datetime:
    moment = OutboxEvent.objects.aggregate(last=Max("occurred_at"))["last"]
    assert moment is not None
    return moment


def wait_until_caught_up(api: Api, slack: timedelta, timeout: float) -> float:
    target, started = last_commit(), time.monotonic()
    while time.monotonic() - started < timeout:
        moment = as_of(api)
        if moment is not None and moment >= target - slack:
            return time.monotonic() - started
        time.sleep(0.2)
    pytest.fail(f"as_of {as_of(api)} did not reach the last commit {target} within {timeout}s")


def test_watermark_stops_without_the_sink_and_catches_up_after_its_restart(pipeline: Pipeline) -> None:
    pipeline.start("--without", "sink")
    sink = pipeline.start_role("-m", "consumers", "sink")
    # The orders API asks for a staff token with the checks' permissions.
    api = Api(pipeline.env["API_URL"], admin_headers())
    product = api.call(
        "POST", "/api/products", {"sku": "WM-1", "name": "Watermark", "price": "3.50", "stock": 10_000}
    )
    user = api.call("POST", "/api/users", {"email": "wm@example.com", "name": "WM"})

    def order() -> None:
        body = {"user_id": user["id"], "items": [{"product_id": product["id"], "quantity": 1}],
                "payment_method": "CARD"}  # fmt: skip
        api.call("POST", "/api/orders", body)

    order()
    wait_until_caught_up(api, timedelta(0), timeout=90)

    pipeline.stop_role(sink)
    order()
    first_unapplied = last_commit()
    seen = []
    for _ in range(24):  # 12 s of commits with the sink down
        order()
        seen.append(as_of(api))
        time.sleep(0.5)
    assert all(m is not None and m < first_unapplied for m in seen), (first_unapplied, seen)
    assert last_commit() - max(m for m in seen if m) > timedelta(seconds=8)

    pipeline.start_role("-m", "consumers", "sink")
    took = wait_until_caught_up(api, timedelta(seconds=1), timeout=90)
    print(f"watermark caught up with the last commit {took:.1f}s after the sink restarted")
