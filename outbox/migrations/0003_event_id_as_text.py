"""The outbox's event_id as canonical UUID text (outbox.models.TextUUIDField): what a change data
capture relay reads is then the envelope's event_id as the polling relay publishes it."""

import uuid
from typing import Any

from django.db import migrations

import outbox.models


def dashed(apps: Any, schema_editor: Any) -> None:
    """MySQL kept the 32 hex digits Django stored there: put the dashes in (MariaDB's native uuid
    became canonical text in the ALTER)."""
    if schema_editor.connection.vendor != "mysql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "UPDATE outbox SET event_id = LOWER(CONCAT_WS('-', SUBSTRING(event_id, 1, 8), "
            "SUBSTRING(event_id, 9, 4), SUBSTRING(event_id, 13, 4), SUBSTRING(event_id, 17, 4), "
            "SUBSTRING(event_id, 21, 12))) WHERE CHAR_LENGTH(event_id) = 32"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0002_status_occurred_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="outboxevent",
            name="event_id",
            field=outbox.models.TextUUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.RunPython(dashed, migrations.RunPython.noop),
    ]
