"""The on-commit kick: a transaction that wrote outbox events starts a relay run as soon as it
commits, so delivery latency is not bound to the beat interval. Beat stays the safety net.

Debounce, with one Redis key per queue holding the relay's state:

- absent: no run is queued or running. A commit sets "queued" and enqueues a run.
- "queued": a run is queued and has not started; it will see the commit's rows. Nothing to do.
- "running": a run is relaying. A commit sets "again": the run relays once more when it is done,
  rather than a new run being enqueued for every commit.
- "again": the running run already knows. Nothing to do.

A run sets "running" before its first claim, and when it is done either goes on (the key said
"again", now "running" again) or deletes the key; after KICK_LOOP_SECONDS it hands over instead
(the key becomes "queued" and a fresh run is enqueued), so one task never holds a worker for
long. Each step is one atomic Redis script, so every commit is followed by a claim that starts
after it. Enqueuing a Celery task costs the committing thread a millisecond or more; under a
steady stream of commits they now pay one Redis round trip each, and the run, before it relays
once more, waits OUTBOX_KICK_LINGER_SECONDS so that each claim carries several commits' events
(the relay's own transactions compete with the writers' for MariaDB and its disk). A run whose
worker dies leaves the key until it expires (KICK_KEY_TTL_MS); until then beat relays.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from backend.celery import app
from outbox.redis_state import kick_key, redis_client

logger = logging.getLogger(__name__)

# Safety net for a queued run that never starts (lost message) or a run whose worker died: the key
# expires by itself.
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


# Returns 1 when the caller must enqueue a run.
_KICK = """
local state = redis.call('GET', KEYS[1])
if not state then
  redis.call('SET', KEYS[1], 'queued', 'PX', ARGV[1])
  return 1
end
if state == 'running' then
  redis.call('SET', KEYS[1], 'again', 'PX', ARGV[1])
end
return 0
"""

# Returns AGAIN when the run relays once more, HAND_OVER when the caller must enqueue a fresh
# run (ARGV[2] = '1': the run has looped long enough), DONE otherwise. A key in any other state
# (it expired mid-run and a commit queued a run since) is left alone.
_FINISH = """
local state = redis.call('GET', KEYS[1])
if state == 'again' then
  if ARGV[2] == '1' then
    redis.call('SET', KEYS[1], 'queued', 'PX', ARGV[1])
    return 2
  end
  redis.call('SET', KEYS[1], 'running', 'PX', ARGV[1])
  return 1
end
if state == 'running' then
  redis.call('DEL', KEYS[1])
end
return 0
"""
DONE, AGAIN, HAND_OVER = 0, 1, 2
# How long one task goes on relaying for the commits that arrive while it runs.
KICK_LOOP_SECONDS = 30.0


def relay_kick() -> None:
    """Queues a relay run unless one is queued or running. Never raises: the write has committed."""
    key = kick_key()
    try:
        client = redis_client()
        if not client.register_script(_KICK)(keys=[key], args=[KICK_KEY_TTL_MS]):
            return
    except Exception as exc:
        logger.warning("relay kick skipped, Redis unavailable (beat will relay): %s", exc)
        return
    _enqueue_run(client, key)


def _enqueue_run(client: Any, key: str) -> None:
    try:
        app.send_task(RELAY_TASK, queue=settings.CELERY_TASK_DEFAULT_QUEUE, retry=False)
    except Exception as exc:
        logger.warning("relay kick could not be queued (beat will relay): %s", exc)
        with contextlib.suppress(Exception):  # the key expires by itself
            client.delete(key)


def relay_kick_started() -> None:
    """Called by a run before its first claim: commits from now on ask it to relay once more."""
    try:
        redis_client().set(kick_key(), "running", px=KICK_KEY_TTL_MS)
    except Exception as exc:
        logger.warning("could not set the relay kick key: %s", exc)


def relay_kick_finished(*, looped_seconds: float) -> bool:
    """Called by a run that is done: True if commits arrived meanwhile and it is to relay once
    more; hands over to a fresh run after KICK_LOOP_SECONDS."""
    key = kick_key()
    hand_over = looped_seconds >= KICK_LOOP_SECONDS
    try:
        client = redis_client()
        outcome = client.register_script(_FINISH)(keys=[key], args=[KICK_KEY_TTL_MS, int(hand_over)])
    except Exception as exc:
        logger.warning("could not read the relay kick key (beat will relay): %s", exc)
        return False
    if outcome == HAND_OVER:
        _enqueue_run(client, key)
    return bool(outcome == AGAIN)


def relay_kick_released() -> None:
    """Called by a run that stops early (Kafka unreachable): the next commit enqueues a run."""
    try:
        redis_client().delete(kick_key())
    except Exception as exc:
        logger.warning("could not clear the relay kick key: %s", exc)
