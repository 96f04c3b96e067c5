"""`retrying`, the bounded retry of Kafka's retriable errors that every check, probe and benchmark
reading metadata or offsets goes through: a coordinator move (NotCoordinatorError, which once cost
`make bench` its whole pipeline stage) is waited out; anything else fails at once."""

from __future__ import annotations

import logging

import pytest
from kafka.errors import NotCoordinatorError

from consumers.kafka_io import retrying


def test_a_coordinator_move_is_waited_out_and_said(caplog: pytest.LogCaptureFixture) -> None:
    answers: list[object] = [NotCoordinatorError(), NotCoordinatorError(), {"group": {}}]

    def list_group_offsets() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with caplog.at_level(logging.WARNING):
        assert retrying("reading offsets", list_group_offsets, initial_delay=0.01) == {"group": {}}
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "reading offsets: NotCoordinatorError"
    ] * 2


def test_a_retriable_error_past_the_timeout_is_raised() -> None:
    def always_moving() -> None:
        raise NotCoordinatorError()

    with pytest.raises(NotCoordinatorError):
        retrying("reading offsets", always_moving, timeout=0.1, initial_delay=0.02)


def test_a_plain_error_is_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("not Kafka's")

    with pytest.raises(ValueError, match="not Kafka's"):
        retrying("reading offsets", broken, initial_delay=0.01)
    assert calls == [1]
