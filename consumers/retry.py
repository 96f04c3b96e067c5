"""Retry with capped exponential backoff for writes to an outside system. The batch stays in hand
and nothing is committed while the write keeps failing; a stop request ends the wait."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TypeVar

from consumers.runner import Rejection, StopRequested, Write

log = logging.getLogger(__name__)

T = TypeVar("T")


def with_retries(
    write: Write[T],
    *,
    stop_event: threading.Event,
    what: str,
    initial_delay: float = 0.5,
    max_delay: float = 30.0,
) -> Write[T]:
    """Retries whatever `write` raises: the target is taken to be unavailable. Data the target
    refuses is not raised but handed back as rejections, which pass through."""

    def retrying_write(items: Sequence[T]) -> Sequence[Rejection] | None:
        delay = initial_delay
        attempt = 1
        while True:
            try:
                return write(items)
            except Exception as exc:
                log.warning("%s failed (attempt %d, retrying in %.1fs): %r", what, attempt, delay, exc)
            if stop_event.wait(delay):
                raise StopRequested(f"stop requested while retrying {what}")
            delay = min(delay * 2, max_delay)
            attempt += 1

    return retrying_write
