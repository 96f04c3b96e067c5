"""Celery tasks of the outbox: thin interfaces over the relay and the retention purge.

Beat runs ``relay_outbox`` every OUTBOX_RELAY_INTERVAL seconds as the safety net; committed
writes also kick it at once (outbox/kick.py). Runs may overlap across workers: the claim protocol
in outbox/relay.py makes that safe.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from outbox.kick import (
    RELAY_TASK,
    relay_kick_finished,
    relay_kick_released,
    relay_kick_started,
)
from outbox.relay import RunResult, relay_run
from outbox.services import outbox_published_purge

logger = logging.getLogger(__name__)


@shared_task(
    name=RELAY_TASK,
    # A database hiccup fails the run before anything is marked; the leases protect the rows.
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=3,
    ignore_result=True,
)
def relay_outbox() -> dict[str, object]:
    """Relays what is due, then once more for as long as commits keep arriving (outbox/kick.py)."""
    relay_kick_started()
    started = time.monotonic()
    published = failed = 0
    while True:
        result = relay_run()
        _log_run(result)
        published, failed = published + result.published, failed + result.failed
        if result.outage:
            # Kafka is away: commits from now on kick runs of their own again, as beat does.
            relay_kick_released()
            break
        if not relay_kick_finished(looped_seconds=time.monotonic() - started):
            break
        time.sleep(settings.OUTBOX_KICK_LINGER_SECONDS)
    return {"published": published, "failed": failed, "outage": result.outage}


def _log_run(result: RunResult) -> None:
    if result.published or result.failed or result.outage:
        logger.info(
            "outbox relay: %s published, %s failed, %s parked in %s batches (%.2fs)%s",
            result.published,
            result.failed,
            result.parked,
            result.batches,
            result.seconds,
            "; Kafka unreachable" if result.outage else "",
        )


@shared_task(autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=3, ignore_result=True)
def purge_published_outbox() -> int:
    deleted = outbox_published_purge(older_than=timedelta(hours=settings.OUTBOX_RETENTION_HOURS))
    if deleted:
        logger.info("outbox retention: deleted %s published events", deleted)
    return deleted
