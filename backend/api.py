"""The single NinjaAPI of the project: every app's router is collected here.

It is mounted at the site root so that one OpenAPI document (/api/openapi.json, browsable at
/api/docs) covers the public API under /api/, the admin API under /admin/orders/ and the probes.
"""

from django.http import HttpRequest
from ninja import NinjaAPI, Schema, Swagger
from ninja.responses import Status

from analytics.api import router as analytics_router
from backend.errors import install_error_handlers
from backend.health import readiness
from backend.json_body import JsonBodyParser
from orders.api import admin_router as orders_admin_router
from orders.api import router as orders_router

api = NinjaAPI(
    title="Outbox analytics pipeline",
    version="1.0.0",
    docs_url="/api/docs",
    # Swagger UI's assets come from this server's static files ("ninja" in INSTALLED_APPS); no
    # validator either, whose badge would send the spec's URL to validator.swagger.io.
    docs=Swagger(settings={"validatorUrl": None}),
    openapi_url="/api/openapi.json",
    parser=JsonBodyParser(),
)
install_error_handlers(api)


class Health(Schema):
    status: str


class Readiness(Schema):
    status: str
    checks: dict[str, dict[str, object]]


@api.get("/healthz", response=Health, tags=["probes"])
def healthz(request: HttpRequest) -> dict[str, str]:
    return {"status": "ok"}


@api.get("/readyz", response={200: Readiness, 503: Readiness}, tags=["probes"])
def readyz(request: HttpRequest) -> Status[dict[str, object]]:
    ready, checks = readiness()
    return Status(200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": checks})


api.add_router("/api", orders_router)
api.add_router("/api/analytics", analytics_router)
api.add_router("/admin", orders_admin_router)
