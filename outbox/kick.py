"""The on-commit kick: a transaction that wrote outbox events starts a relay run as soon as it
commits, so delivery latency is not bound to the beat interval. Beat stays the safety net.

Debounce: the kicker sets a Redis key (SET NX) before it enqueues a run, and the run deletes the
key when it starts. While a run is queued but not started, further commits need no new run (the
queued one will see their rows); once it started, the next commit queues exactly one more. A storm
of commits therefore queues at most one run at a time, and no commit's rows wait for beat.
"""

from __future__ import annotations

import contextlib
import logging

from django.conf import settings
from django.db import transaction

from backend.celery import app
from outbox.redis_state import kick_key, redis_client

logger = logging.getLogger(__name__)

# Safety net for a queued run that never starts (lost message): the key expires by itself.
KICK_KEY_TTL_MS = 30_000
# Enqueued by name, as the beat schedule does: the task's module imports the services that call
# this one, so importing the task here would make an import circle.
RELAY_TASK = "outbox.tasks.relay_outbox"


def relay_kick_on_commit() -> None:
    """Registers the kick once per transaction, however many events it writes."""
    if not settings.OUTBOX_KICK_ON_COMMIT:
        return
    connection = transaction.get_connection()
    # Django keeps on_commit callbacks as (savepoint ids, callback, robust) in run_on_commit; a
    # rolled-back savepoint drops its callbacks from that list, so a later event registers again.
    if any(entry[1] is relay_kick for entry in connection.run_on_commit):
        return
    transaction.on_commit(relay_kick)


def relay_kick() -> None:
    """Queues a relay run unless one is already queued. Never raises: the write has committed."""
    key = kick_key()
    try:
        client = redis_client()
        if not client.set(key, "1", nx=True, px=KICK_KEY_TTL_MS):
            return
    except Exception as exc:
        logger.warning("relay kick skipped, Redis unavailable (beat will relay): %s", exc)
        return
    try:
        app.send_task(RELAY_TASK, queue=settings.CELERY_TASK_DEFAULT_QUEUE, retry=False)
    except Exception as exc:
        logger.warning("relay kick could not be queued (beat will relay): %s", exc)
        with contextlib.suppress(Exception):  # the key expires by itself
            client.delete(key)


def relay_kick_consumed() -> None:
    """Called by a starting run: commits from now on need a run of their own."""
    try:
        redis_client().delete(kick_key())
    except Exception as exc:
        logger.warning("could not clear the relay kick key: %s", exc)
