"""CH:ATC (ITI-81): the patient's audit trail."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from consent.principal import Principal
from gateway.http.outcomes import fhir_response
from gateway.http.routes.common import base_url, run_use_case, services
from gateway.http.security import require_principal

router = APIRouter(dependencies=[Depends(require_principal)])


@router.get("/fhir/AuditEvent", summary="ITI-81 Retrieve ATNA Audit Event (CH:ATC)")
async def audit_trail(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    bundle = await run_use_case(request, services(request).trail.read, principal=principal,
                                params=list(request.query_params.multi_items()), base_url=base_url(request))
    return fhir_response(bundle)
