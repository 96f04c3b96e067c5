"""The roles' logging, with kafka-python's reconnect noise turned into one line per broker outage.

One broker of three down is a condition the pipeline handles: with replication factor 3 and
min.insync.replicas 2 the other two take every write and serve every read. kafka-python 3 (seen on
3.0.12) still logs each reconnect attempt at ERROR, several lines per attempt and per client: the
connection's own "<KafkaConnection node_id=2 …>: Connection lost: KafkaConnectionError: 111
ECONNREFUSED", preceded by kafka.net.manager's "Connection failed: …", kafka.net.transport's
"socket disconnected" / "Abort (…)" and kafka.cluster's "Metadata refresh: failed …", none of which
names the broker. A role with a producer, a consumer and an admin client logged dozens of them for
an outage that cost nothing.

The relay's producer is librdkafka's (outbox/producer.py), which logs through the logger
"kafka.librdkafka": a lost or refused connection is one INFO line naming "host:port/node" ("FAIL
[rdkafka#producer-1] [thrd:…]: 127.0.0.1:19093/2: Disconnected: connection closed by peer …"), and
its error reports ("127.0.0.1:19093/2: Connect to ipv4#127.0.0.1:19093 failed: Connection refused",
"1/3 brokers are down") are WARNINGs from outbox.producer on the same logger.

BrokerOutageFilter sits on those five loggers. Of each attempt it keeps the line that names the
node: the first per broker becomes one WARNING saying which broker is unreachable and how many
others serve; repeats within the window are suppressed and counted, and the first one after the
window says how many were. The lines that only repeat a connection error without naming a broker
are dropped. When no other broker answers either the line stays an ERROR: that is an outage.
tests/consumers/test_kafka_logging.py tests the logic, tests/outbox/test_kafka_faults.py counts the
ERROR lines of real relay processes with a broker stopped.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# librdkafka's lines, as confluent-kafka hands them to Python logging (outbox/producer.py).
LIBRDKAFKA_LOGGER = "kafka.librdkafka"
# kafka-python's loggers that report a broker connection failing, and librdkafka's.
CONNECTION_LOGGERS = (
    "kafka.net.connection",
    "kafka.net.transport",
    "kafka.net.manager",
    "kafka.cluster",
    LIBRDKAFKA_LOGGER,
)
OUTAGE_WINDOW_SECONDS = 60.0

# "<KafkaConnection node_id=2 broker_version=(4, 3) (disconnected)>: Connection lost: <error>"
_NAMED_FAILURE = re.compile(r"node_id=(?P<node>[^\s>]+).*?>: Connection lost: (?P<error>.*)")
# The same attempt told again without the broker: only a connection error, nothing else.
_UNNAMED_FAILURE = re.compile(r"KafkaConnectionError|socket disconnected|ECONNREFUSED|Connection timed out")
# librdkafka: "127.0.0.1:19093/2: Disconnected: …" or "…/2: Connect to ipv4#… failed: …"; before
# it knows the brokers' ids, "127.0.0.1:19093/bootstrap: …" (the broker is then named by address).
_RDKAFKA_FAILURE = re.compile(
    r"(?:^|\s)(?P<address>[^\s/\[]+)/(?P<id>\d+|bootstrap): "
    r"(?P<error>(?:Disconnected|Connect to |Connection refused|.*timed out).*)"
)
# librdkafka's count of brokers down; with some still up it says nothing the named lines do not.
_RDKAFKA_SOME_DOWN = re.compile(r"(?P<down>\d+)/(?P<total>\d+) brokers are down")
_REWRITTEN = "kafka_broker_outage"


@dataclass
class _Outage:
    window_started: float
    last_seen: float
    suppressed: int = 0


class BrokerOutageFilter(logging.Filter):
    """Per broker: the first connection failure as one clear line, repeats suppressed for
    `window` seconds and then summarised. `brokers` is the size of the cluster (the bootstrap
    list), to say how many others still serve."""

    def __init__(
        self,
        brokers: int,
        window: float = OUTAGE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.brokers = brokers
        self.window = window
        self._clock = clock
        self._outages: dict[str, _Outage] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name not in CONNECTION_LOGGERS:
            return True
        if getattr(record, _REWRITTEN, False):
            return True  # by another instance: a second dictConfig adds its filter beside the first
        if record.name == LIBRDKAFKA_LOGGER:
            named = _RDKAFKA_FAILURE.search(record.getMessage())
            if named is None:
                return self._librdkafka_other(record)
        else:
            if record.levelno < logging.WARNING:
                return True
            message = record.getMessage()
            named = _NAMED_FAILURE.search(message)
            if named is None:
                return _UNNAMED_FAILURE.search(message) is None
        with self._lock:
            node = named["node"] if record.name != LIBRDKAFKA_LOGGER else _rdkafka_node(named)
            line = self._outage_line(node, named["error"].strip())
        if line is None:
            return False
        text, others = line
        record.levelno = logging.WARNING if others else logging.ERROR
        record.levelname = logging.getLevelName(record.levelno)
        record.msg, record.args, record.exc_info, record.exc_text = text, None, None, None
        setattr(record, _REWRITTEN, True)
        return True

    @staticmethod
    def _librdkafka_other(record: logging.LogRecord) -> bool:
        """A librdkafka line that names no failing broker: kept from WARNING up, except the count
        of brokers down while some still serve; "3/3 brokers are down" becomes an ERROR."""
        if record.levelno < logging.WARNING:
            return False
        counted = _RDKAFKA_SOME_DOWN.search(record.getMessage())
        if counted is None:
            return True
        if counted["down"] != counted["total"]:
            return False
        record.levelno, record.levelname = logging.ERROR, logging.getLevelName(logging.ERROR)
        return True

    def _outage_line(self, node: str, error: str) -> tuple[str, int] | None:
        """The line to log for this failure of `node` and how many other brokers serve, or None
        to suppress it (lock held)."""
        now = self._clock()
        outage = self._outages.get(node)
        if outage is not None and now - outage.last_seen > self.window:
            outage = None  # failures this far apart are separate outages
        if outage is None:
            self._outages[node] = _Outage(window_started=now, last_seen=now)
            others = self._others_serving(now)
            return (
                f"Kafka broker {node} unreachable ({error}); {_serving(others)}; further connection"
                f" errors for it are suppressed for {self.window:.0f}s"
            ), others
        outage.last_seen = now
        if now - outage.window_started < self.window:
            outage.suppressed += 1
            return None
        repeats, outage.suppressed, outage.window_started = outage.suppressed, 0, now
        others = self._others_serving(now)
        return (
            f"Kafka broker {node} still unreachable ({error}): {repeats} more connection errors"
            f" in the last {self.window:.0f}s; {_serving(others)}"
        ), others

    def _others_serving(self, now: float) -> int:
        down = sum(1 for o in self._outages.values() if now - o.last_seen <= self.window)
        return max(self.brokers - down, 0)


def _rdkafka_node(named: re.Match[str]) -> str:
    return named["id"] if named["id"].isdigit() else named["address"]


def _serving(others: int) -> str:
    if others == 0:
        return "no other broker answers either"
    return f"{others} other broker serves" if others == 1 else f"{others} other brokers serve"


def logging_config(*, brokers: int, level: str = "INFO") -> dict[str, Any]:
    """Every role's logging as a dictConfig (Django's LOGGING, the consumers' entry point): plain
    lines on stderr, kafka-python from WARNING up, librdkafka from INFO (where it tells of a
    lost connection), and their connection failures through one BrokerOutageFilter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "filters": {"kafka_broker_outages": {"()": BrokerOutageFilter, "brokers": brokers}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "kafka": {"level": "WARNING"},
            **{name: {"filters": ["kafka_broker_outages"]} for name in CONNECTION_LOGGERS},
            LIBRDKAFKA_LOGGER: {"level": "INFO", "filters": ["kafka_broker_outages"]},
        },
    }
