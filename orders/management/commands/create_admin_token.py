"""manage.py create_admin_token <username>: issue an admin API bearer token to a staff user.

The token is printed once and stored only as a digest. Use it as ``Authorization: Bearer <token>``
together with ``X-Admin-Id: <the user's numeric id>``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.errors import AppError
from orders.selectors import user_by_username
from orders.services import admin_api_token_issue


class Command(BaseCommand):
    help = "Issue an admin API bearer token to an active staff user and print it (shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="username of an active staff user")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        user = user_by_username(username=username)
        if user is None:
            raise CommandError(f"no user named {username!r}; create one with `manage.py createsuperuser`")
        try:
            token = admin_api_token_issue(user=user)
        except AppError as exc:
            raise CommandError(f"{username!r}: {exc.message}") from exc
        self.stderr.write(f"Issued an admin API token for {username!r}; send it with X-Admin-Id: {user.pk}")
        self.stdout.write(token)
