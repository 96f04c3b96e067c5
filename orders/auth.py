"""Authentication of the API's staff callers: a bearer token issued by ``manage.py
create_admin_token`` (services such as the shop's storefront or the pipeline checks) or the Django
session of a logged-in user (people in the back office). Either names a user;
``require_permission`` then checks that the user is active staff holding the model permission the
route needs, and ``admin_identity`` that the X-Admin-Id header of the admin DELETE names that same
user.

Every route that serves or changes personal data uses ``staff_auth``; only the catalogue's reads,
the aggregate analytics and the probes are public (README, "Who may call the API")."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from backend.errors import AppError, Forbidden
from orders.selectors import admin_token_of
from orders.services import admin_api_token_mark_used, admin_token_digest

ADMIN_ID_HEADER = "X-Admin-Id"
# A positive integer that fits a signed 64-bit id: no sign, no leading zero, no spaces.
_ADMIN_ID_PATTERN = re.compile(r"[1-9][0-9]{0,18}")
_MAX_ID = 2**63 - 1
# last_used_at is kept to the minute: writing it on every request would add an UPDATE to each
# call of the API's busiest routes (POST /api/orders).
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class AdminTokenAuth(HttpBearer):
    """``Authorization: Bearer <token>``."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        admin_token = admin_token_of(token_digest=admin_token_digest(token))
        if admin_token is None:
            return None
        last_used = admin_token.last_used_at
        if last_used is None or timezone.now() - last_used >= _LAST_USED_RESOLUTION:
            admin_api_token_mark_used(token=admin_token)
        return admin_token.user


class AdminSessionAuth(APIKeyCookie):
    """The Django session of a logged-in user (e.g. from Django admin). A cookie-borne credential
    must come with a valid CSRF token on every write, or any page a staff user visits could delete
    or create orders (Django's CSRF check lets safe methods, GET, through)."""

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self) -> None:
        # CSRF is checked below, only once a session user is present: a request without any
        # credentials must get 401, not a CSRF 403.
        super().__init__(csrf=False)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if not request.user.is_authenticated:
            return None
        if check_csrf(request) is not None:
            raise Forbidden("CSRF check failed for session authentication", code="csrf_failed")
        return request.user


staff_auth = [AdminTokenAuth(), AdminSessionAuth()]


def parse_admin_id(raw: str | None) -> int:
    if raw is None or raw == "":
        raise AppError(
            f"the {ADMIN_ID_HEADER} header is required", code="missing_header", field=ADMIN_ID_HEADER
        )
    if not _ADMIN_ID_PATTERN.fullmatch(raw) or int(raw) > _MAX_ID:
        raise AppError(
            f"the {ADMIN_ID_HEADER} header must be the admin's numeric user id (a positive integer)",
            code="malformed_header",
            field=ADMIN_ID_HEADER,
        )
    return int(raw)


def require_staff(request: HttpRequest) -> Any:
    """The authenticated user, if active staff; 403 otherwise. (Requests without credentials
    never get here: ninja answers 401 before the endpoint runs.)"""
    user = request.auth  # type: ignore[attr-defined]
    if not (user.is_active and user.is_staff):
        raise Forbidden("only active staff users may use this endpoint")
    return user


def require_permission(request: HttpRequest, permission: str) -> Any:
    """The authenticated user, if active staff holding ``permission`` (``app_label.codename``, the
    model permission Django admin asks for the same change); 403 otherwise."""
    user = require_staff(request)
    if not user.has_perm(permission):
        raise Forbidden(f"the {permission} permission is required", code="permission_denied")
    return user


def admin_identity(request: HttpRequest, raw_admin_id: str | None, permission: str) -> int:
    """The id of the staff user making this request, checked against the X-Admin-Id header and
    holding ``permission``."""
    admin_id = parse_admin_id(raw_admin_id)
    user = require_permission(request, permission)
    if user.pk != admin_id:
        raise Forbidden(f"{ADMIN_ID_HEADER} does not match the authenticated user", field=ADMIN_ID_HEADER)
    return admin_id
