"""One application error type, mapped once to one JSON error shape for the whole API.

Every error response body is ``{"error": {"code": ..., "message": ..., "field": ..., "details": ...}}``.
Services raise ``AppError`` subclasses; ``install_error_handlers`` maps them (and the framework's own
validation and HTTP errors) to responses, so no view builds an error body by hand.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern
from django.views.defaults import page_not_found
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

logger = logging.getLogger(__name__)


class AppError(Exception):
    """An expected failure with an HTTP status, a stable machine-readable code and a message."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, field=self.field, details=self.details)


class MalformedBody(AppError):
    """A request body that is not JSON the API can read (backend/json_body.py)."""

    status_code = 400
    code = "malformed_json"


class InvalidInput(AppError):
    status_code = 422
    code = "invalid_input"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class ErrorDetail(Schema):
    code: str
    message: str
    field: str | None = None
    details: Any = None


class ErrorOut(Schema):
    """The body of every error response, for the endpoints' `response=` declarations."""

    error: ErrorDetail


def error_body(code: str, message: str, *, field: str | None = None, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details is not None:
        error["details"] = details
    return {"error": error}


def _field_of(loc: list[Any] | tuple[Any, ...]) -> str | None:
    # ninja locations look like ("body", "payload", "items", 0, "quantity"); drop the request part
    # and the schema's parameter name so the field reads as the client sent it: items.0.quantity.
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie", "form", "file"}:
        parts = parts[1:]
        if len(parts) > 1:
            parts = parts[1:]
    return ".".join(parts) or None


def validation_error_body(exc: NinjaValidationError) -> tuple[dict[str, Any], int]:
    """The error body and status of a request that failed validation: 400 for a body that is not
    JSON at all, 422 naming the first field that broke a rule otherwise."""
    errors = [
        {
            "field": _field_of(e.get("loc", ())),
            "message": e.get("msg", "invalid value"),
            "type": e.get("type"),
        }
        for e in exc.errors
    ]
    first = errors[0] if errors else {"field": None, "message": "invalid request"}
    # Malformed JSON arrives as a validation error with no location; report it as a 400.
    if any(e.get("type") == "json_invalid" for e in errors) or (
        first["field"] is None and "json" in str(first["message"]).lower()
    ):
        return error_body("malformed_json", "request body is not valid JSON", details=errors), 400
    message = f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
    return error_body("invalid_input", message, field=first["field"], details=errors), 422


def suspicious_request_body(exc: SuspiciousOperation) -> dict[str, Any]:
    if isinstance(exc, RequestDataTooBig):
        return error_body("payload_too_large", "request body exceeds the maximum allowed size")
    return error_body("bad_request", str(exc) or "bad request")


def install_error_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(AppError)
    def on_app_error(request: HttpRequest, exc: AppError) -> HttpResponse:
        return api.create_response(request, exc.body(), status=exc.status_code)

    @api.exception_handler(NinjaValidationError)
    def on_validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        body, status = validation_error_body(exc)
        return api.create_response(request, body, status=status)

    @api.exception_handler(AuthenticationError)
    def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        body = error_body("not_authenticated", "authentication credentials were missing or invalid")
        return api.create_response(request, body, status=401)

    @api.exception_handler(PermissionDenied)
    def on_permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
        return api.create_response(request, error_body("forbidden", str(exc) or "forbidden"), status=403)

    @api.exception_handler(SuspiciousOperation)
    def on_suspicious_request(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
        # Django refuses oversized bodies (DATA_UPLOAD_MAX_MEMORY_SIZE) and similar abuse with
        # these; they are the client's fault, never a server error.
        return api.create_response(request, suspicious_request_body(exc), status=400)

    @api.exception_handler(Http404)
    def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return api.create_response(request, error_body("not_found", str(exc) or "not found"), status=404)

    @api.exception_handler(HttpError)
    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if isinstance(exc.__cause__, AppError):  # ninja's 400 for a body its parser refused
            return on_app_error(request, exc.__cause__)
        code = "bad_request" if exc.status_code < 500 else "server_error"
        return api.create_response(request, error_body(code, str(exc.message)), status=exc.status_code)

    @api.exception_handler(Exception)
    def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        body = error_body("server_error", "internal server error")
        return api.create_response(request, body, status=500)


# --- outside ninja's handlers: routing and media type -------------------------------------------

JSON_MEDIA_TYPE = "application/json"
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


def json_error_response(status: int, code: str, message: str) -> HttpResponse:
    return JsonResponse(error_body(code, message), status=status)


def _refuse_non_json(request: HttpRequest) -> HttpResponse | None:
    # A body sent as text/plain or as a form needs no CORS preflight, so any page could post it
    # cross-site; refusing every write that is not JSON closes that door.
    if request.method in _WRITE_METHODS and request.content_type != JSON_MEDIA_TYPE:
        message = f"{request.method} needs a {JSON_MEDIA_TYPE} body, not {request.content_type or 'none'}"
        return json_error_response(415, "unsupported_media_type", message)
    return None


def _in_error_shape(response: HttpResponseBase) -> HttpResponseBase:
    # ninja answers a method a path does not serve with a bare text 405 of its own.
    if isinstance(response, HttpResponseNotAllowed):
        allowed = response["Allow"]
        response = json_error_response(405, "method_not_allowed", f"method not allowed; allowed: {allowed}")
        response["Allow"] = allowed
    return response


def json_api_view(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Wraps one of the API's views with what ninja's exception handlers cannot see."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        refused = _refuse_non_json(request)
        return refused if refused is not None else _in_error_shape(view(request, *args, **kwargs))

    return wrapped


def json_api_urls(urls: tuple[list[Any], str, str]) -> tuple[list[URLPattern], str, str]:
    """``api.urls`` with every view wrapped by ``json_api_view``."""
    patterns, app_name, namespace = urls
    wrapped = [URLPattern(p.pattern, json_api_view(p.callback), p.default_args, p.name) for p in patterns]
    return wrapped, app_name, namespace


def not_found_view(request: HttpRequest, exception: Exception) -> HttpResponseBase:
    """Django's 404 handler: the API's paths answer in the error shape, the rest as Django does."""
    if request.path.startswith("/api/") or request.path.startswith("/admin/orders/"):
        return json_error_response(404, "not_found", f"no endpoint at {request.path}")
    return page_not_found(request, exception)
