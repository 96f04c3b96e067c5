"""Liveness and readiness probes against the real database and Kafka cluster."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from backend import health


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


@pytest.mark.django_db
def test_readyz_says_unavailable_without_the_error_text(caplog: pytest.LogCaptureFixture) -> None:
    with override_settings(KAFKA_BOOTSTRAP_SERVERS=["127.0.0.1:1"], READYZ_CACHE_SECONDS=0):
        response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["kafka"] == {"ok": False, "error": "kafka unavailable"}
    # What went wrong is for the operator's log, not for whoever asks.
    text = response.content.decode()
    assert "Error" not in text and "127.0.0.1" not in text and "Broker" not in text
    assert any("readiness check kafka failed" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.django_db
def test_repeated_probes_reuse_one_kafka_client_and_a_recent_result(kafka_brokers: int) -> None:
    with override_settings(READYZ_CACHE_SECONDS=0):
        assert Client().get("/readyz").status_code == 200
        client = health.kafka_probe.client
        assert client is not None
        for _ in range(3):
            assert Client().get("/readyz").status_code == 200
            assert health.kafka_probe.client is client

    with override_settings(READYZ_CACHE_SECONDS=60):
        first = health.readiness()
        assert all(health.readiness() is first for _ in range(10))


@pytest.mark.django_db
def test_a_failed_check_drops_the_client_and_the_next_one_builds_a_working_one(kafka_brokers: int) -> None:
    with override_settings(READYZ_CACHE_SECONDS=0):
        assert Client().get("/readyz").status_code == 200
        working = health.kafka_probe.client
        with override_settings(KAFKA_BOOTSTRAP_SERVERS=["127.0.0.1:1"]):
            assert Client().get("/readyz").status_code == 503
            assert health.kafka_probe.client is None
        assert Client().get("/readyz").status_code == 200
        assert health.kafka_probe.client is not None and health.kafka_probe.client is not working
