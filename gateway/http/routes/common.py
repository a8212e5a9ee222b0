"""What every FHIR route needs: the use-cases, the face's state, the FHIR base URL, a JSON body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from gateway.exchanges.auditing import deferred_audits
from gateway.exchanges.services import Services
from gateway.http.face import HttpFace
from gateway.http.outcomes import HttpProblem

ACCEPTED_BODY_TYPES = ("application/fhir+json", "application/json")


def services(request: Request) -> Services:
    return request.app.state.services


def face(request: Request) -> HttpFace:
    return request.app.state.http


def base_url(request: Request) -> str:
    """From settings only (`Settings.fhir_base_url`): `Host: evil.example` must not move a link."""
    return request.app.state.http.settings.fhir_base_url


async def fhir_body(request: Request) -> bytes:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ACCEPTED_BODY_TYPES:
        raise HttpProblem(415, "not-supported", "send the resource as application/fhir+json",
                          location="Content-Type")
    return await request.body()


async def run_use_case(request: Request, use_case: Callable[..., Any], /, *, inline: bool = False, **kwargs) -> Any:
    """Run one use-case for a route; its answer leaves only once the audit records of its reads have
    committed (else 503), and no thread is held while the audit group commit writes them.

    `inline`: a read runs on the event loop when the store is in-process (SQLite: its queries are CPU
    work with no I/O wait that a thread hop would cover); with PostgreSQL, and for changes, in the
    thread pool."""
    pending: list = []
    token = deferred_audits.set(pending)
    try:
        if inline and request.app.state.http.inline_reads:
            return use_case(**kwargs)
        return await run_in_threadpool(use_case, **kwargs)
    finally:
        deferred_audits.reset(token)
        if pending:
            await request.app.state.services.auditor.written(pending)
