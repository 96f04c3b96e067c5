"""Django admin's outbox page on real MariaDB: retrying parked events is a change to them, so it
needs the change permission, not merely the view permission."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from outbox.models import OutboxEvent, OutboxStatus
from tests.outbox.conftest import insert_outbox_events

CHANGELIST = "/admin/outbox/outboxevent/"


def staff_client(*codenames: str) -> Client:
    user = get_user_model().objects.create_user(
        username=f"ops-{len(codenames)}", password="pw", is_staff=True
    )
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="outbox", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def parked_event() -> OutboxEvent:
    [event] = insert_outbox_events(orders=1, versions=1)
    OutboxEvent.objects.filter(pk=event.pk).update(status=OutboxStatus.FAILED, attempts=10)
    return event


def retry(client: Client, event: OutboxEvent) -> None:
    client.post(CHANGELIST, {"action": "retry_parked", "_selected_action": [event.pk]})


@pytest.mark.django_db
def test_view_permission_alone_neither_offers_nor_runs_the_retry() -> None:
    event = parked_event()
    viewer = staff_client("view_outboxevent")
    page = viewer.get(CHANGELIST)
    assert page.status_code == 200 and "retry_parked" not in page.content.decode()

    retry(viewer, event)

    event.refresh_from_db()
    assert (event.status, event.attempts) == (OutboxStatus.FAILED, 10)


@pytest.mark.django_db
def test_change_permission_retries_a_parked_event() -> None:
    event = parked_event()
    operator = staff_client("view_outboxevent", "change_outboxevent")
    assert "retry_parked" in operator.get(CHANGELIST).content.decode()

    retry(operator, event)

    event.refresh_from_db()
    assert (event.status, event.attempts) == (OutboxStatus.PENDING, 0)
