"""What every FHIR route needs: the services, the FHIR base URL, a JSON body."""

from __future__ import annotations

from fastapi import Request

from gateway.outcomes import HttpProblem

ACCEPTED_BODY_TYPES = ("application/fhir+json", "application/json")


def services(request: Request):
    return request.app.state.services


def base_url(request: Request) -> str:
    configured = request.app.state.services.settings.public_base_url
    return configured.rstrip("/") if configured else f"{str(request.base_url).rstrip('/')}/fhir"


async def fhir_body(request: Request) -> bytes:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ACCEPTED_BODY_TYPES:
        raise HttpProblem(415, "not-supported", "send the resource as application/fhir+json",
                          location="Content-Type")
    return await request.body()
