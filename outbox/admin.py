"""Django admin for the outbox: a read-only view of delivery state, and a retry for parked events."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from outbox.models import OutboxEvent
from outbox.services import outbox_event_retry


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "event_type",
        "aggregate_type",
        "aggregate_id",
        "aggregate_version",
        "status",
        "attempts",
        "next_attempt_at",
        "published_at",
        "created_at",
    )
    list_filter = ("status", "event_type")
    search_fields = ("=aggregate_id", "=event_id")
    ordering = ("-id",)
    actions = ("retry_parked",)
    show_full_result_count = False  # a COUNT(*) over a large outbox on every page is not worth it

    # Events are facts: nobody edits, adds or deletes them by hand here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: OutboxEvent | None = None) -> list[str]:
        return [f.name for f in OutboxEvent._meta.fields]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # Retrying changes delivery state, so it asks for the change permission, which the page
        # itself never grants: nobody edits an event's fields here.
        return request.user.has_perm("outbox.change_outboxevent")

    @admin.action(description="Retry the selected parked (failed) events", permissions=["retry"])
    def retry_parked(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        retried = outbox_event_retry(event_ids=selected)
        skipped = len(selected) - retried
        self.message_user(request, f"{retried} parked event(s) queued for another attempt.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} selected event(s) were not parked and were left alone.", messages.WARNING
            )
