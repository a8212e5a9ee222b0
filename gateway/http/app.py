"""The FastAPI application of the FHIR face: routes, the error table, middlewares.

The composition root (`gateway/wiring.py`) builds the use-cases and this face's state, and passes
the lifespan (background workers) and the other faces served by the same app (the patient's page):
this module knows neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi import FastAPI

from gateway.exchanges.services import Services
from gateway.http import outcomes
from gateway.http.access_log import AccessLog
from gateway.http.face import HttpFace
from gateway.http.limits import BodySizeLimit
from gateway.http.rest_conventions import RestConventions
from gateway.http.no_store import PatientDataNotStored
from gateway.http.routes import audit, consents, lists, meta, mhd, patients
from gateway.http.trace import TraceContext


def create_app(services: Services, face: HttpFace, *, lifespan=None,
               mounts: Iterable[Callable[[FastAPI], None]] = ()) -> FastAPI:
    """`mounts` add the routes of other faces served on this origin (e.g. `/portal`), before the
    middlewares, so every answer passes the same body limit, trace, access log and transport layers."""
    settings = face.settings
    docs = settings.api_docs_enabled  # public metadata only; EPR_API_DOCS=false turns it off
    app = FastAPI(title="EPR gateway", version="0.1.0", docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None, swagger_ui_oauth2_redirect_url=None,
                  lifespan=lifespan)
    app.state.services = services
    app.state.http = face
    app.router.redirect_slashes = False  # it would redirect to the Host header's site: see trailing_slash
    app.router.routes[:0] = mhd.reads  # first: the hottest routes are matched before any other
    app.include_router(meta.router)
    app.include_router(mhd.router)
    app.include_router(lists.router)
    app.include_router(patients.router)
    app.include_router(consents.router)
    app.include_router(audit.router)
    for mount in mounts:
        mount(app)
    outcomes.install_error_handlers(app)
    if docs:
        _describe_plain_routes(app)
    app.add_middleware(RestConventions)  # innermost: sees the request after the body limit, as routes do
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(PatientDataNotStored)
    app.add_middleware(TraceContext)
    app.add_middleware(AccessLog)
    add_transport_middlewares(app, settings)
    return app


def _describe_plain_routes(app: FastAPI) -> None:
    from gateway.http.discovery import add_plain_routes_to_openapi

    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = add_plain_routes_to_openapi(generate(), app.router.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_transport_middlewares(app: FastAPI, settings) -> None:
    """Outermost: compression of answers over ~1 KB when the client accepts gzip, and CORS for the
    configured origins only (EPR_CORS_ORIGINS; none by default: browsers of other origins get nothing)."""
    from starlette.middleware.cors import CORSMiddleware

    from gateway.http.rest_conventions import GzipWhenAccepted

    app.add_middleware(GzipWhenAccepted)
    if settings.cors_origin_list:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list, allow_credentials=False,
                           allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Accept", "Prefer", "If-Match",
                                          "If-None-Match", "traceparent"],
                           expose_headers=["ETag", "Location", "Content-Location", "Last-Modified"], max_age=600)
