from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    """ClickHouse analytics: the schema command now, the analytics API later."""

    name = "analytics"
    default_auto_field = "django.db.models.BigAutoField"
