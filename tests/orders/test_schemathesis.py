"""Property-based run of schemathesis against the project's OpenAPI document: valid and invalid
requests to every operation (through the WSGI application, on real MariaDB) never get a 5xx.

Probes are left out: /readyz legitimately answers 503 when Kafka is down, and both probes have no
input to fuzz. The run is derandomized and bounded, so it is repeatable and takes seconds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from backend.wsgi import application
from orders.models import Customer, Product
from orders.services import OrderLine, order_create
from tests.orders.conftest import Admin

EXAMPLES_PER_OPERATION = 40
PROBES = {"/healthz", "/readyz"}


def has_input(operation: Any) -> bool:
    # An operation without parameters or body has nothing a negative case could make invalid.
    parts = (operation.path_parameters, operation.query, operation.headers, operation.body)
    return any(len(part) for part in parts)


def run_operation(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> int:
    calls = 0

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        nonlocal calls
        calls += 1
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error])

    check()
    return calls


# transaction=True: requests go through the real WSGI handler, which closes the database connection
# after each request as in production; inside a test-wide transaction that close would break it.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error(
    mode: GenerationMode,
    admin: Admin,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
    analytics_schema: str,
) -> None:
    # The analytics endpoints read the run's ClickHouse database (empty but migrated).
    # Some rows to hit: small ids exist, so generated requests reach found-order code paths too.
    customer = make_customer()
    products = [make_product(stock=1000) for _ in range(3)]
    for product in products:
        order_create(user_id=customer.pk, lines=[OrderLine(product.pk, 1)], payment_method="CARD")

    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = [
        op
        for op in operations
        if op.path not in PROBES and (mode is GenerationMode.POSITIVE or has_input(op))
    ]
    assert {op.path for op in fuzzed} >= {
        "/api/orders",
        "/api/orders/{order_id}/status",
        "/admin/orders/{order_id}",
        "/api/analytics/daily-sales",
    }

    # Credentials of a real staff user, so admin-only operations run past authentication.
    headers = {"Authorization": f"Bearer {admin.token}"}
    calls = {f"{op.method.upper()} {op.path}": run_operation(op, mode, headers) for op in fuzzed}
    assert all(count > 0 for count in calls.values()), calls
