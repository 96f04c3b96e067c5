"""Static files are served by the application itself (WhiteNoise), so Django admin and the API
docs (Swagger UI from django-ninja's static files, no CDN) work under gunicorn with DEBUG off, where
Django's own static view is absent."""

import re

from django.test import Client, override_settings


@override_settings(DEBUG=False)
def test_admin_stylesheet_is_served_without_debug() -> None:
    response = Client().get("/static/admin/css/base.css")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"body" in body


@override_settings(DEBUG=False)
def test_api_docs_use_only_this_servers_static_files() -> None:
    client = Client()
    page = client.get("/api/docs").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(url.startswith("/static/ninja/") for url in assets), assets
    for url in assets:
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert len(body) > 0, url
