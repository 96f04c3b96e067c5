"""Celery tasks of the outbox: thin interfaces over the relay and the retention purge.

Beat runs ``relay_outbox`` every OUTBOX_RELAY_INTERVAL seconds as the safety net; committed
writes also kick it at once (outbox/kick.py). Runs may overlap across workers: the claim protocol
in outbox/relay.py makes that safe.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from outbox.kick import RELAY_TASK, relay_kick_consumed
from outbox.relay import relay_run
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
    relay_kick_consumed()
    result = relay_run()
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
    return {"published": result.published, "failed": result.failed, "outage": result.outage}


@shared_task(autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=3, ignore_result=True)
def purge_published_outbox() -> int:
    deleted = outbox_published_purge(older_than=timedelta(hours=settings.OUTBOX_RETENTION_HOURS))
    if deleted:
        logger.info("outbox retention: deleted %s published events", deleted)
    return deleted
