"""Patient identity: ITI-104 Patient Identity Feed (PIXm/PDQm queries come with the identity issue)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from consent.principal import Principal
from gateway.outcomes import fhir_response
from gateway.routes.common import base_url, fhir_body, services
from gateway.security import require_principal

router = APIRouter(dependencies=[Depends(require_principal)])


@router.put("/fhir/Patient", summary="ITI-104 Patient Identity Feed")
async def patient_identity_feed(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    resource, created = await run_in_threadpool(
        services(request).exchange.register_patient, principal=principal,
        identifier_param=request.query_params.get("identifier"), body=body)
    location = f"{base_url(request)}/Patient/{resource['id']}"
    return fhir_response(resource, 201 if created else 200, {"Location": location})
