"""URL map: the NinjaAPI first (it owns /api/, /admin/orders/{id}, /healthz, /readyz), then
Django's admin site at /admin/. The admin DELETE API and Django admin share the /admin/ prefix
without clashing because the API only matches /admin/orders/<id> (no trailing slash), a path the
admin site never serves."""

from django.contrib import admin
from django.urls import path

from backend.api import api
from backend.errors import json_api_urls
from outbox.metrics import metrics_view

# Unknown paths under the API's prefixes answer in its JSON error shape.
handler404 = "backend.errors.not_found_view"

urlpatterns = [
    path("", json_api_urls(api.urls)),
    path("admin/", admin.site.urls),
    # Prometheus scrape endpoint of the outbox relay (plain text, outside the JSON API).
    path("metrics", metrics_view),
]
