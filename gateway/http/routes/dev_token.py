"""`POST /dev-issuer/token`: the DEVELOPMENT issuer's token endpoint (client credentials, the client
authenticated by its TLS certificate; `gateway/auth/token_endpoint.py` decides). Public like the
discovery documents (a token request carries no token): the TLS client certificate is the credential.

Answers in OAuth's terms, not FHIR's (RFC 6749 §5.1/5.2: JSON, `Cache-Control: no-store`; a refusal is
`{"error", "error_description"}`, rendered by the one error table). Every issued token is recorded in the
ledger (ITI-71, the technical user, its responsible professional and the token's `jti`) before it leaves:
a token that cannot be audited is not issued. Refusals are recorded like refused authentications (one
record at once, the repeats of a window counted). In production the route answers 404: there is no
development issuer to speak for.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.auth.errors import TokenRequestRefused
from gateway.http.outcomes import HttpProblem
from gateway.http.routes.common import face, services

router = APIRouter()
TOKEN_PATH = "/dev-issuer/token"
MAX_FORM_BYTES = 8 * 1024
MAX_FIELDS = 16
FORM = "application/x-www-form-urlencoded"
NOT_CACHED = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.post(TOKEN_PATH, summary="DEVELOPMENT token endpoint: client credentials, client authenticated by mutual TLS")
async def token(request: Request) -> Response:
    gateway = face(request)
    grant = gateway.token_grant
    if grant is None:
        raise HttpProblem(404, "not-found", "no development token endpoint here (production, or no development "
                                            "issuer)")
    address = request.client.host if request.client else None
    wait = gateway.refusals.retry_after(address)  # a flood of refusals from here: counted, not even read
    if wait is not None:
        raise TokenRequestRefused(429, "invalid_request", f"too many refused requests from this address; retry "
                                                          f"after {wait} s")
    auditor = services(request).auditor
    try:
        form = _form(request.headers.get("content-type", ""), await request.body())
        # Off the event loop: the signing key is read from disk and the token signed.
        issued = await run_in_threadpool(grant.issue, form=form,
                                         certificate_cn=getattr(request.state, "tls_client_common_name", None),
                                         certificate_subject=getattr(request.state, "tls_client_subject", None))
    except TokenRequestRefused as refused:
        if gateway.refusals.refused(address, f"token endpoint: {refused.error}"):
            await run_in_threadpool(auditor.failure, "ITI-71", None, refused)
        raise
    await run_in_threadpool(auditor.write_now, [auditor.record("ITI-71", issued.principal, action="E")])
    return JSONResponse(issued.answer(), headers=NOT_CACHED)


def _form(content_type: str, body: bytes) -> dict[str, str]:
    """The request's parameters (RFC 6749 §3.2: form-encoded, none twice), or invalid_request."""
    if content_type.split(";")[0].strip().lower() != FORM:
        raise TokenRequestRefused(400, "invalid_request", f"send the request as {FORM}")
    if len(body) > MAX_FORM_BYTES:
        raise TokenRequestRefused(400, "invalid_request", f"the request is larger than {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body),
                          max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise TokenRequestRefused(400, "invalid_request", "the request is not a form of ASCII parameters") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise TokenRequestRefused(400, "invalid_request", "a parameter is given twice")
    return form
