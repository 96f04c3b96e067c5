"""Retry with capped exponential backoff for writes to an outside system. The batch stays in hand
and nothing is committed while the write keeps failing; a stop request ends the wait."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from consumers.runner import StopRequested

log = logging.getLogger(__name__)

T = TypeVar("T")


def with_retries(
    write: Callable[[Sequence[T]], None],
    *,
    stop_event: threading.Event,
    what: str,
    initial_delay: float = 0.5,
    max_delay: float = 30.0,
) -> Callable[[Sequence[T]], None]:
    def retrying_write(items: Sequence[T]) -> None:
        delay = initial_delay
        attempt = 1
        while True:
            try:
                write(items)
                return
            except Exception as exc:
                log.warning("%s failed (attempt %d, retrying in %.1fs): %r", what, attempt, delay, exc)
            if stop_event.wait(delay):
                raise StopRequested(f"stop requested while retrying {what}")
            delay = min(delay * 2, max_delay)
            attempt += 1

    return retrying_write
