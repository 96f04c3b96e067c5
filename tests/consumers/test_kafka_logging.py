"""The broker-outage filter's logic on records shaped like kafka-python 3's and librdkafka's own
(copied from a 3-node cluster with one broker stopped), with a clock the test moves. Real relay
processes with a broker stopped: tests/outbox/test_kafka_faults.py."""

from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Iterator

import pytest

from consumers.kafka_logging import CONNECTION_LOGGERS, LIBRDKAFKA_LOGGER, BrokerOutageFilter, logging_config

LOST = "<KafkaConnection node_id=%s broker_version=(4, 3) (disconnected)>: Connection lost: %s"
REFUSED = "KafkaConnectionError: 111 ECONNREFUSED"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(logger: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(logger, level, "kafka", 1, msg, args, None)


def connection_lost(node: int | str, error: str = REFUSED) -> logging.LogRecord:
    return record("kafka.net.connection", LOST, node, error)


def passed(outages: BrokerOutageFilter, *records: logging.LogRecord) -> list[logging.LogRecord]:
    return [r for r in records if outages.filter(r)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outages(clock: Clock) -> BrokerOutageFilter:
    return BrokerOutageFilter(brokers=3, window=60, clock=clock)


def test_the_first_failure_of_a_broker_is_one_warning_naming_it_and_the_brokers_that_serve(
    outages: BrokerOutageFilter,
) -> None:
    [line] = passed(outages, connection_lost(2))
    assert line.levelno == logging.WARNING and line.levelname == "WARNING"
    message = line.getMessage()
    assert message.startswith("Kafka broker 2 unreachable (KafkaConnectionError: 111 ECONNREFUSED)")
    assert "2 other brokers serve" in message and "suppressed for 60s" in message


def test_repeats_are_suppressed_for_the_window_then_summarised(
    outages: BrokerOutageFilter, clock: Clock
) -> None:
    passed(outages, connection_lost(2))
    for _ in range(40):
        clock.now += 1
        assert passed(outages, connection_lost(2)) == []
    clock.now += 30  # past the window, still within reach of the last failure
    [summary] = passed(outages, connection_lost(2))
    assert summary.levelno == logging.WARNING
    assert summary.getMessage().startswith("Kafka broker 2 still unreachable (KafkaConnectionError")
    assert "40 more connection errors in the last 60s; 2 other brokers serve" in summary.getMessage()
    assert passed(outages, connection_lost(2)) == []  # a new window began


def test_a_failure_long_after_the_last_is_a_new_outage(outages: BrokerOutageFilter, clock: Clock) -> None:
    passed(outages, connection_lost(2))
    clock.now += 61
    [line] = passed(outages, connection_lost(2))
    assert "Kafka broker 2 unreachable" in line.getMessage()


def test_each_broker_is_reported_once_and_the_last_one_down_stays_an_error(
    outages: BrokerOutageFilter,
) -> None:
    first, second, third = (passed(outages, connection_lost(n))[0] for n in (1, 2, 3))
    assert "2 other brokers serve" in first.getMessage()
    assert second.levelno == logging.WARNING and "1 other broker serves" in second.getMessage()
    assert third.levelno == logging.ERROR and "no other broker answers either" in third.getMessage()


def test_lines_that_repeat_the_error_without_naming_a_broker_are_dropped(outages: BrokerOutageFilter) -> None:
    transport, disconnected = "<KafkaTCPTransport [127.0.0.1:24512<-57690]>", "socket disconnected"
    same_attempt = [
        record("kafka.net.transport", "%s: socket disconnected", transport),
        record("kafka.net.transport", "%s: Abort (%s)", transport, f"KafkaConnectionError: {disconnected}"),
        record("kafka.net.manager", "Connection failed: %s", REFUSED),
        record("kafka.cluster", "Metadata refresh: failed %s", REFUSED),
    ]
    assert passed(outages, *same_attempt) == []


def test_other_records_pass_untouched(outages: BrokerOutageFilter) -> None:
    others = [
        record("kafka.cluster", "Topic %s not found in cluster metadata", "orders"),
        record("kafka.net.manager", "Bootstrap failed: %s", "KafkaTimeoutError: Unable to bootstrap"),
        record("kafka.net.connection", LOST, 2, REFUSED, level=logging.INFO),
        record("outbox.relay", LOST, 2, REFUSED),
    ]
    assert passed(outages, *others) == others
    assert [r.levelno for r in others] == [logging.ERROR, logging.ERROR, logging.INFO, logging.ERROR]
    assert others[-1].getMessage() == LOST % (2, REFUSED)


@pytest.fixture
def roles_logging() -> Iterator[io.StringIO]:
    """The roles' logging config, writing to a buffer; the logging state is restored after."""
    saved = {name: (log.level, log.filters[:]) for name, log in _loggers()}
    for _name, log in _loggers():
        log.filters.clear()  # Django's settings configured them already
    root_handlers = logging.root.handlers[:]
    config = logging_config(brokers=3)
    stream = io.StringIO()
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    logging.root.handlers[:] = root_handlers
    for name, (level, filters) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).filters[:] = filters


def _loggers() -> list[tuple[str, logging.Logger]]:
    names = ["kafka", *CONNECTION_LOGGERS]
    return [(name, logging.getLogger(name)) for name in names]


def test_the_roles_logging_config_sends_kafkas_connection_errors_through_one_filter(
    roles_logging: io.StringIO,
) -> None:
    for _ in range(5):
        logging.getLogger("kafka.net.manager").error("Connection failed: %s", REFUSED)
        logging.getLogger("kafka.net.connection").error(LOST, 3, REFUSED)
    lines = roles_logging.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert " WARNING kafka.net.connection: Kafka broker 3 unreachable" in lines[0]


def test_a_second_filter_leaves_a_rewritten_record_alone(outages: BrokerOutageFilter, clock: Clock) -> None:
    # dictConfig run twice in a process (Django's LOGGING, then a role's own) stacks two filters.
    [line] = passed(outages, connection_lost(2))
    again = BrokerOutageFilter(brokers=3, window=60, clock=clock)
    assert again.filter(line) and "Kafka broker 2 unreachable" in line.getMessage()


# librdkafka's lines as confluent-kafka logs them (copied from a relay with broker 2 stopped).
RDKAFKA_LOST = (
    "FAIL [rdkafka#producer-1] [thrd:127.0.0.1:19093/2]: 127.0.0.1:19093/2: Disconnected: connection"
    " closed by peer: receive 0 after POLLIN (after 2627ms in state UP)"
)
RDKAFKA_REFUSED = (
    "127.0.0.1:19093/2: Connect to ipv4#127.0.0.1:19093 failed: Connection refused"
    " (after 0ms in state CONNECT)"
)


def test_librdkafkas_lost_connection_is_the_same_one_warning_naming_the_broker(
    outages: BrokerOutageFilter,
) -> None:
    lost = record(LIBRDKAFKA_LOGGER, "%s", RDKAFKA_LOST, level=logging.INFO)
    refused = record(LIBRDKAFKA_LOGGER, "%s", RDKAFKA_REFUSED, level=logging.WARNING)
    [line] = passed(outages, lost, refused)
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert message.startswith("Kafka broker 2 unreachable (Disconnected: connection closed by peer")
    assert "2 other brokers serve" in message


def test_librdkafkas_count_of_brokers_down_is_dropped_until_all_are(outages: BrokerOutageFilter) -> None:
    some = record(LIBRDKAFKA_LOGGER, "%s", "1/3 brokers are down", level=logging.WARNING)
    chatter = record(
        LIBRDKAFKA_LOGGER, "%s", "CONFWARN [rdkafka#producer-1] [thrd:app]: x", level=logging.INFO
    )
    every = record(LIBRDKAFKA_LOGGER, "%s", "3/3 brokers are down", level=logging.WARNING)
    other = record(LIBRDKAFKA_LOGGER, "%s", "Local: Fatal error", level=logging.WARNING)
    assert passed(outages, some, chatter, every, other) == [every, other]
    assert every.levelno == logging.ERROR and other.levelno == logging.WARNING


def test_the_roles_logging_config_passes_librdkafkas_lost_connection_as_one_warning(
    roles_logging: io.StringIO,
) -> None:
    for _ in range(3):
        logging.getLogger(LIBRDKAFKA_LOGGER).info("%s", RDKAFKA_LOST)
    lines = roles_logging.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert f" WARNING {LIBRDKAFKA_LOGGER}: Kafka broker 2 unreachable" in lines[0]


def test_librdkafkas_bootstrap_connections_are_named_by_address_and_suppressed_alike(
    outages: BrokerOutageFilter,
) -> None:
    line = (
        "FAIL [rdkafka#producer-1] [thrd:127.0.0.1:23961/bootstrap]: 127.0.0.1:23961/bootstrap: Connect to"
        " ipv4#127.0.0.1:23961 failed: Connection refused (after 0ms in state CONNECT)"
    )
    repeats = [record(LIBRDKAFKA_LOGGER, "%s", line, level=logging.ERROR) for _ in range(20)]
    [first] = passed(outages, *repeats)
    assert first.getMessage().startswith("Kafka broker 127.0.0.1:23961 unreachable (Connect to ipv4#")
