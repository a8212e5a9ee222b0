"""Authentication at the router: the one place a request becomes a `Principal` (deny by default).

Every route outside `PUBLIC_PATHS` depends on `require_principal` (FastAPI routes) or is wrapped in
`authenticated` (the plain Starlette routes of the hot reads); a test walks the app's routes and
fails on any that is neither.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from consent.principal import Principal
from gateway.auth.errors import AccessRefused, AuthenticationFailed
from gateway.http.outcomes import HttpProblem

# Public metadata only (no patient data): the CapabilityStatement, the SMART configuration, health, and the
# OpenAPI description with its page (switchable off: EPR_API_DOCS=false; off by default in production).
PUBLIC_PATHS = frozenset({"/fhir/metadata", "/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration",
                          "/health/live", "/health/ready", "/openapi.json", "/docs"})
log = logging.getLogger("epr.gateway.auth")


def authenticate(request: Request) -> Principal:
    """Bearer IUA token (+ client certificate when mutual TLS is on) → Principal, or 401/403."""
    face = request.app.state.http
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("no bearer token: this exchange needs an IUA access token")
    try:
        principal = face.verifier.verify(token.strip())
    except AuthenticationFailed as exc:
        log.info("token refused: %s", exc.reason)  # the reason only: the token never reaches the log
        raise _unauthorized(f"invalid token: {exc.reason}") from None
    except AccessRefused as exc:
        raise HttpProblem(403, "forbidden", exc.reason) from None
    subject = getattr(request.state, "tls_client_subject", None)
    if principal.role in face.settings.mtls_roles and not subject:
        raise HttpProblem(403, "forbidden", f"role {principal.role} must connect with a client certificate "
                                            "(mutual TLS)")
    if subject:
        principal = _with_certificate(principal, subject)
    return principal


def _with_certificate(principal: Principal, subject: str) -> Principal:
    return replace(principal, client_certificate=subject)


async def require_principal(request: Request) -> Principal:
    """The route dependency. Async so that the usual case (a token seen before, verified from the
    verifier's cache in microseconds) costs no thread hop; a refusal is audited in the thread pool."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        refusals = request.app.state.http.refusals
        address = request.client.host if request.client else None
        wait = refusals.retry_after(address)
        if wait is not None:  # too many refusals from this address: not even parsed (see exchanges/refusal_windows)
            raise _throttled(wait)
        try:
            principal = authenticate(request)
        except HttpProblem as refusal:
            if refusals.refused(address, refusal.message):
                await run_in_threadpool(_audit_refusal, request, refusal)
            else:
                refusal.audited = True  # counted: its window's summary record carries it
            raise
        request.state.principal = principal
    return principal


def authenticated(endpoint: Callable[[Request, Principal], Awaitable[Response]]) -> Callable:
    """A plain Starlette endpoint behind `require_principal`, like every FastAPI route. Marked, so
    the deny-by-default test can tell a guarded plain route from an unguarded one."""
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        return await endpoint(request, await require_principal(request))

    guarded.requires_principal = True  # type: ignore[attr-defined]
    return guarded


def _audit_refusal(request: Request, refusal: HttpProblem) -> None:
    """What is known of a caller that was not let in: address, path, trace, and the reason."""
    auditor = request.app.state.services.auditor
    auditor.failure("authentication", None, AccessRefused(f"{request.method} {request.url.path}: {refusal.message}"))
    refusal.audited = True


def _throttled(seconds: int) -> HttpProblem:
    problem = HttpProblem(429, "throttled", "too many refused authentications from this address; retry after "
                                            f"{seconds} s", headers={"Retry-After": str(seconds)})
    problem.audited = True  # counted into the address's summary record
    return problem


def _unauthorized(message: str) -> HttpProblem:
    error = 'Bearer error="invalid_token"' if "invalid token" in message else 'Bearer realm="epr-gateway"'
    return HttpProblem(401, "login", message, headers={"WWW-Authenticate": error})
