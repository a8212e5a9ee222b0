"""Every error leaves the FHIR face as an OperationOutcome, built here, with one status mapping.

The record's refusals (`RecordError` subclasses) map by type (`STATUS_BY_ERROR`); the face's own
refusals are `HttpProblem`s carrying their status; `install_error_handlers` is the app's whole error
table (a middleware that must answer before the app — the body limit, the REST conventions' format and
parameter refusals — answers through `refusal_before_routing`, audited as the handler audits).
Internal details (stack traces, SQL, key ids) go to the log; the client gets what it can act on.
`tests/unit/gateway/http/test_error_table.py` keeps other HTTP modules from building error answers.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from adapters.cara.errors import (
    Conflict,
    Gone,
    IntegrityFailure,
    InvalidInput,
    Issue,
    NotFound,
    ProfileViolation,
    RecordError,
    StaleVersion,
    StoreUnavailable,
    TooLarge,
    UnknownPatient,
)
from gateway.auth.errors import AccessRefused, TokenRequestRefused
from gateway.exchanges.audit_commit import AuditUnavailable
from gateway.http.route_table import methods_for_path
from gateway.http.trailing_slash import slash_redirect

FHIR_JSON = "application/fhir+json"
log = logging.getLogger("epr.gateway")

STATUS_BY_ERROR: dict[type[RecordError], int] = {
    InvalidInput: 400,
    ProfileViolation: 422,
    UnknownPatient: 422,
    NotFound: 404,
    Conflict: 409,
    StaleVersion: 412,
    Gone: 410,
    IntegrityFailure: 500,
    StoreUnavailable: 503,
    TooLarge: 413,
}


class HttpProblem(Exception):
    """An error raised by the HTTP face itself (size limit, media type, authentication)."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 location: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.location = status, code, message, headers, location


def operation_outcome(issues: list[Issue], *, code: str, severity: str = "error",
                      details_code: str | None = None) -> dict[str, Any]:
    rendered = []
    for issue in issues:
        item: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": issue.message}
        if details_code:
            item["details"] = {"text": details_code}
        if issue.location:
            item["expression"] = [issue.location]
        rendered.append(item)
    return {"resourceType": "OperationOutcome", "issue": rendered}


def fhir_response(resource: dict[str, Any] | bytes, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """A FHIR JSON answer, from a resource or from JSON already serialised."""
    body = resource if isinstance(resource, bytes) else orjson.dumps(resource)
    return Response(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def record_error_response(exc: RecordError) -> Response:
    status = next((s for kind, s in STATUS_BY_ERROR.items() if isinstance(exc, kind)), 500)
    if status >= 500:
        log.error("record error %s: %s", type(exc).__name__, exc.message)
        issues = [Issue("the document could not be served: its stored form failed an integrity check"
                        if isinstance(exc, IntegrityFailure) else "a dependency of the gateway is unavailable")]
        return fhir_response(operation_outcome(issues, code=exc.code), status)
    return fhir_response(operation_outcome(exc.issues, code=exc.code, details_code=exc.details_code), status)


def problem_response(exc: HttpProblem) -> Response:
    outcome = operation_outcome([Issue(exc.message, exc.location)], code=exc.code)
    return fhir_response(outcome, exc.status, exc.headers)


async def handle_record_error(_request: Request, exc: RecordError) -> Response:
    return record_error_response(exc)


async def handle_problem(request: Request, problem: HttpProblem) -> Response:
    """A refusal at the HTTP face (media type, size, …; `limits.BodyTooLarge` is one) is audited like
    any other, unless authentication already recorded it; an unwritable ledger turns it into a 503."""
    if not getattr(problem, "audited", False):
        try:
            described = HttpProblem(problem.status, problem.code,
                                    f"{request.method} {request.url.path}: {problem.message}")
            await run_in_threadpool(request.app.state.services.auditor.failure, "HTTP",
                                    getattr(request.state, "principal", None), described)
        except AuditUnavailable as unavailable:
            return record_error_response(unavailable)
    return problem_response(problem)


def refusal_before_routing(problem: HttpProblem):
    """The ASGI answer of a middleware that refuses a request before any route sees it (the body limit,
    the REST conventions: too many parameters, an unknown format, a search parameter's value): audited
    and answered as `handle_problem` does for the app's own refusals — no exchange leaves the gateway
    without its audit record, whichever layer said no. The middlewares run inside the app, so the
    request's scope holds the app and its services."""

    async def answer(scope, receive, send) -> None:
        response = await handle_problem(Request(scope, receive), problem)
        await response(scope, receive, send)

    return answer


async def handle_invalid_request(_request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's own parameter validation (a path or query value of the wrong type)."""
    issues = [Issue(e["msg"], ".".join(str(p) for p in e["loc"])) for e in exc.errors()[:10]]
    return fhir_response(operation_outcome(issues, code="invalid"), 400)


async def handle_not_found(request: Request, _exc: Exception) -> Response:
    redirect = slash_redirect(request)  # the same path without its trailing slash, relative
    if redirect is not None:
        return redirect
    message = f"no such resource or interaction: {request.method} {request.url.path}"
    return fhir_response(operation_outcome([Issue(message)], code="not-found"), 404)


async def handle_not_allowed(request: Request, _exc: Exception) -> Response:
    message = f"{request.method} is not supported on {request.url.path}"
    allowed = ", ".join(sorted(methods_for_path(request.app.router.routes, request.url.path)))
    return fhir_response(operation_outcome([Issue(message)], code="not-supported"), 405, {"Allow": allowed})


async def handle_unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return fhir_response(operation_outcome([Issue("internal error; the gateway's log has the details")],
                                           code="exception"), 500)


async def handle_refused(_request: Request, exc: AccessRefused) -> Response:
    """A valid principal that may not do this (AccessRefused): 403 with the decision's reason."""
    return problem_response(HttpProblem(403, "forbidden", exc.reason))


async def handle_token_refused(_request: Request, exc: TokenRequestRefused) -> Response:
    """The development token endpoint's refusal in OAuth's terms (RFC 6749 §5.2), not an OperationOutcome:
    its clients are OAuth clients. Audited by the route."""
    body = orjson.dumps({"error": exc.error, "error_description": exc.reason})
    return Response(body, status_code=exc.status, media_type="application/json",
                    headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def install_error_handlers(app) -> None:
    """The FHIR face's error table: each kind of failure and the handler that answers it."""
    app.add_exception_handler(RecordError, handle_record_error)
    app.add_exception_handler(HttpProblem, handle_problem)
    app.add_exception_handler(AccessRefused, handle_refused)
    app.add_exception_handler(TokenRequestRefused, handle_token_refused)
    app.add_exception_handler(RequestValidationError, handle_invalid_request)
    app.add_exception_handler(404, handle_not_found)
    app.add_exception_handler(405, handle_not_allowed)
    app.add_exception_handler(Exception, handle_unexpected)
