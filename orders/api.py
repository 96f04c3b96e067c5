"""Orders HTTP API (django-ninja): thin endpoints that validate, call one service, serialize."""

from ninja import Router

router = Router(tags=["orders"])
admin_router = Router(tags=["admin"])
