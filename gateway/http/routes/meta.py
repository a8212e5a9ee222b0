"""The public routes: CapabilityStatement, SMART configuration and health. Nothing here touches patient data."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.http.capability import capability_statement as generated_statement
from gateway.http.discovery import oauth_uris, smart_configuration
from gateway.http.outcomes import fhir_response
from gateway.http.routes.common import base_url, face

router = APIRouter()
_STARTED = datetime.now(UTC).isoformat(timespec="seconds")


@router.get("/fhir/metadata", summary="CapabilityStatement")
async def capability_statement(request: Request) -> Response:
    return fhir_response(capability(request))


@router.get("/health/live")
async def live() -> Response:
    return fhir_response({"status": "live"})


@router.get("/health/ready")
async def ready(request: Request) -> Response:
    """200 when every dependency answers; else 503 naming the one(s) down (never why: this route is public)."""
    checks = await run_in_threadpool(face(request).readiness)
    ok = all(state == "up" for state in checks.values())
    return fhir_response({"status": "ready" if ok else "unavailable", "checks": checks}, 200 if ok else 503)


def capability(request: Request) -> dict:
    """Generated from the app's routes (gateway.http.capability): it cannot declare what is not served."""
    settings = face(request).settings
    return generated_statement(request.app.router.routes, base=base_url(request), date=_STARTED, version="0.1.0",
                                oauth=oauth_uris(settings.trusted_issuers), cors=bool(settings.cors_origin_list))


@router.get("/.well-known/smart-configuration", summary="SMART configuration: trusted issuers, endpoints, scopes")
@router.get("/fhir/.well-known/smart-configuration", summary="SMART configuration at the FHIR base (SMART App Launch)")
async def smart_config(request: Request) -> Response:
    return Response(orjson.dumps(smart_configuration(face(request).settings.trusted_issuers)),
                    media_type="application/json")
