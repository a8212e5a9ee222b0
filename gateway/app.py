"""The FastAPI application: routes, error handlers, body limit. Wiring lives in `gateway.wiring`."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from adapters.cara.errors import Issue, RecordError
from gateway import outcomes
from gateway.access_log import AccessLog
from gateway.audit_commit import AuditUnavailable
from gateway.auth.errors import AccessRefused
from gateway.auth_refusals import RefusalFlusher
from gateway.limits import BodySizeLimit, BodyTooLarge
from gateway.routes import audit, consents, meta, mhd, patients
from gateway.trace import TraceContext
from gateway.wiring import Services, siem_shipper


def create_app(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        shipper = siem_shipper(services.settings, services.engine)
        if shipper is not None:
            shipper.start()
        refusal_flusher = RefusalFlusher(services.auth_refusals, services.auditor)
        refusal_flusher.start()
        yield
        await refusal_flusher.stop()  # every counted refusal reaches the ledger before the stop
        if shipper is not None:
            shipper.stop()
        # A clean stop signs the ledger's head, so no record is left outside a signed checkpoint.
        services.auditor.ledger.checkpoint()

    app = FastAPI(title="EPR gateway", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.services = services
    app.router.routes[:0] = mhd.reads  # first: the hottest routes are matched before any other
    app.include_router(meta.router)
    app.include_router(mhd.router)
    app.include_router(patients.router)
    app.include_router(consents.router)
    app.include_router(audit.router)
    app.add_exception_handler(RecordError, outcomes.handle_record_error)
    app.add_exception_handler(outcomes.HttpProblem, _problem)
    app.add_exception_handler(AccessRefused, outcomes.handle_refused)
    app.add_exception_handler(BodyTooLarge, _too_large)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_allowed)
    app.add_exception_handler(Exception, outcomes.handle_unexpected)
    app.add_middleware(BodySizeLimit, max_bytes=services.settings.max_body_bytes)
    app.add_middleware(TraceContext)
    app.add_middleware(AccessLog)
    return app


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
    return outcomes.fhir_response(outcomes.operation_outcome([Issue(message)], code="not-supported"), 405)
