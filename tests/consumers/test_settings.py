"""The consumers' one settings object: the same variable names and defaults as backend/settings, and
a clear error for a value it cannot use."""

from __future__ import annotations

import pytest

from consumers.settings import ConsumerSettings, SettingsError


def test_defaults_are_those_of_the_local_stack() -> None:
    settings = ConsumerSettings.from_env({})
    assert settings.kafka_bootstrap_servers == ["127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094"]
    assert (settings.order_events_topic, settings.analytics_topic) == ("order.events", "orders_analytics")
    assert (settings.order_events_dlq_topic, settings.analytics_dlq_topic) == (
        "order.events.dlq",
        "orders_analytics.dlq",
    )
    assert settings.clickhouse_database == "analytics"
    assert settings.clickhouse_url.startswith("chdb://") and settings.clickhouse_url.endswith("/var/chdb")
    assert (settings.batch_size, settings.batch_seconds, settings.min_write_interval) == (10_000, 1.0, 0.2)
    assert settings.clickhouse_fsync_after_insert is True


def test_environment_overrides() -> None:
    settings = ConsumerSettings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "a:1, b:2",
            "ANALYTICS_TOPIC": "rows",
            "CLICKHOUSE_URL": "http://ch:8123",
            "CONSUMER_BATCH_SIZE": "50",
            "CONSUMER_BATCH_SECONDS": "0.25",
            "SINK_GROUP_ID": "sink-2",
            "CLICKHOUSE_FSYNC_AFTER_INSERT": "off",
        }
    )
    assert settings.kafka_bootstrap_servers == ["a:1", "b:2"]
    assert (settings.analytics_topic, settings.analytics_dlq_topic) == ("rows", "rows.dlq")
    assert settings.clickhouse_url == "http://ch:8123"
    assert (settings.batch_size, settings.batch_seconds, settings.sink_group_id) == (50, 0.25, "sink-2")
    assert settings.clickhouse_fsync_after_insert is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONSUMER_BATCH_SIZE": "many"}, "CONSUMER_BATCH_SIZE must be an integer"),
        ({"CONSUMER_BATCH_SIZE": "0"}, "CONSUMER_BATCH_SIZE must be at least 1"),
        ({"CONSUMER_BATCH_SECONDS": "-1"}, "CONSUMER_BATCH_SECONDS must be positive"),
        ({"CONSUMER_MIN_WRITE_INTERVAL": "0"}, "CONSUMER_MIN_WRITE_INTERVAL must be positive"),
        ({"CONSUMER_SESSION_TIMEOUT_MS": "100"}, "CONSUMER_SESSION_TIMEOUT_MS must be at least 6000"),
        ({"CLICKHOUSE_FSYNC_AFTER_INSERT": "sometimes"}, "CLICKHOUSE_FSYNC_AFTER_INSERT must be a boolean"),
    ],
)
def test_unusable_values_are_refused_with_the_variable_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ConsumerSettings.from_env(env)
