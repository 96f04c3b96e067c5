"""Liveness and readiness probes against the real database and Kafka cluster."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings


def test_healthz_answers_without_dependencies() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_kafka(kafka_brokers: int) -> None:
    response = Client().get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["kafka"] == {**body["checks"]["kafka"], "ok": True, "brokers": kafka_brokers}


@pytest.mark.django_db
def test_readyz_reports_unreachable_kafka_as_503() -> None:
    # Nothing listens on port 1 of loopback: the probe must say so, not hang or raise.
    with override_settings(KAFKA_BOOTSTRAP_SERVERS=["127.0.0.1:1"]):
        response = Client().get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "not ready"
    assert body["checks"]["kafka"]["ok"] is False
    assert body["checks"]["kafka"]["error"]
    assert body["checks"]["database"]["ok"] is True
