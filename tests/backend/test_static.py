"""Django admin's static files are served by the application itself (WhiteNoise), so the admin is
usable under gunicorn with DEBUG off, where Django's own static view is absent."""

from django.test import Client, override_settings


@override_settings(DEBUG=False)
def test_admin_stylesheet_is_served_without_debug() -> None:
    response = Client().get("/static/admin/css/base.css")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"body" in body
