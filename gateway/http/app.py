"""The FastAPI application: routes, error handlers, body limit. Wiring lives in `gateway.wiring`."""

from __future__ import annotations

import logging

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from adapters.cara.errors import Issue, RecordError
from gateway.http import outcomes
from gateway.http.access_log import AccessLog
from gateway.exchanges.audit_commit import AuditUnavailable
from gateway.auth.errors import AccessRefused
from gateway.exchanges.refusal_windows import RefusalFlusher
from gateway.http.limits import BodySizeLimit, BodyTooLarge
from gateway import portal
from gateway.http.rest_conventions import RestConventions, allowed_methods
from gateway.http.routes import audit, consents, meta, mhd, patients
from gateway.http.trace import TraceContext
from gateway.wiring import Services, audit_witness, siem_shipper


def create_app(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        shipper = siem_shipper(services.settings, services.engine)
        witness = audit_witness(services.settings, services.engine, services.auditor.ledger)
        witness.start()
        if shipper is not None:
            shipper.start()
        refusal_flusher = RefusalFlusher(services.auth_refusals, services.auditor)
        refusal_flusher.start()
        bridge = None
        if services.settings.mllp_serve:  # `epr-gateway serve`: HL7 v2 beside HTTPS (every worker shares the port)
            from gateway.wiring import mllp_listener

            bridge = mllp_listener(services, reuse_port=services.settings.workers > 1)
            try:
                await bridge.start()
            except OSError as error:  # HTTPS still serves; senders retry until the port is fixed
                logging.getLogger("epr.mllp").error("MLLP listener NOT started on %s:%s: %s",
                                                    services.settings.mllp_host, services.settings.mllp_port, error)
                await bridge.stop()
                bridge = None
        yield
        if bridge is not None:
            await bridge.stop()
        await refusal_flusher.stop()  # every counted refusal reaches the ledger before the stop
        if shipper is not None:
            shipper.stop()
        # A clean stop signs the ledger's head, so no record is left outside a signed checkpoint.
        services.auditor.ledger.checkpoint()
        witness.stop()

    docs = services.settings.api_docs_enabled  # public metadata only; EPR_API_DOCS=false turns it off
    app = FastAPI(title="EPR gateway", version="0.1.0", docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None, swagger_ui_oauth2_redirect_url=None,
                  lifespan=lifespan)
    app.state.services = services
    app.router.routes[:0] = mhd.reads  # first: the hottest routes are matched before any other
    app.include_router(meta.router)
    app.include_router(mhd.router)
    app.include_router(patients.router)
    app.include_router(consents.router)
    app.include_router(audit.router)
    portal.install(app, services)  # the patient's web page under /portal (same use-cases, own door)
    app.add_exception_handler(RecordError, outcomes.handle_record_error)
    app.add_exception_handler(outcomes.HttpProblem, _problem)
    app.add_exception_handler(AccessRefused, outcomes.handle_refused)
    app.add_exception_handler(BodyTooLarge, _too_large)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_allowed)
    app.add_exception_handler(Exception, outcomes.handle_unexpected)
    if docs:
        _describe_plain_routes(app)
    app.add_middleware(RestConventions)  # innermost: sees the request after the body limit, as routes do
    app.add_middleware(BodySizeLimit, max_bytes=services.settings.max_body_bytes)
    app.add_middleware(TraceContext)
    app.add_middleware(AccessLog)
    add_transport_middlewares(app, services.settings)
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


async def _problem(request, problem: outcomes.HttpProblem):
    """A refusal at the HTTP face (media type, size, …) is audited like any other, unless
    authentication already recorded it; an unwritable ledger turns it into a 503."""
    if not getattr(problem, "audited", False):
        try:
            described = outcomes.HttpProblem(problem.status, problem.code,
                                             f"{request.method} {request.url.path}: {problem.message}")
            await run_in_threadpool(request.app.state.services.auditor.failure, "HTTP",
                                    getattr(request.state, "principal", None), described)
        except AuditUnavailable as unavailable:
            return outcomes.record_error_response(unavailable)
    return outcomes.problem_response(problem)


async def _too_large(request, _exc):
    limit = request.app.state.services.settings.max_body_bytes
    problem = outcomes.HttpProblem(413, "too-costly", f"the request body exceeds the limit of {limit} bytes")
    return await _problem(request, problem)


async def _bad_request(_request, exc: RequestValidationError):
    issues = [Issue(e["msg"], ".".join(str(p) for p in e["loc"])) for e in exc.errors()[:10]]
    return outcomes.fhir_response(outcomes.operation_outcome(issues, code="invalid"), 400)


async def _not_found(request, _exc):
    message = f"no such resource or interaction: {request.method} {request.url.path}"
    return outcomes.fhir_response(outcomes.operation_outcome([Issue(message)], code="not-found"), 404)


async def _not_allowed(request, _exc):
    message = f"{request.method} is not supported on {request.url.path}"
    return outcomes.fhir_response(outcomes.operation_outcome([Issue(message)], code="not-supported"), 405,
                                  {"Allow": allowed_methods(request.app, request.url.path)})
