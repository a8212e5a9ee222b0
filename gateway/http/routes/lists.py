"""MHD SubmissionSet Lists: ITI-66 Find Document Lists, and the read of the `List/{id}` every ITI-65
answer names (its SubmissionSet's location)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from consent.principal import Principal
from gateway.http.outcomes import fhir_response
from gateway.http.routes.common import base_url, run_use_case, services
from gateway.http.security import require_principal

router = APIRouter(dependencies=[Depends(require_principal)])


@router.get("/fhir/List", summary="ITI-66 Find Document Lists (SubmissionSets)")
async def find_document_lists(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    bundle = await run_use_case(request, services(request).lists.find, inline=True, principal=principal,
                                params=list(request.query_params.multi_items()), base_url=base_url(request))
    return fhir_response(bundle)


@router.get("/fhir/List/{set_id}", summary="Read a SubmissionSet List (the location an ITI-65 answer names)")
async def read_document_list(set_id: str, request: Request, principal: Principal = Depends(require_principal)) -> Response:
    resource = await run_use_case(request, services(request).lists.read, inline=True, principal=principal,
                                  set_id=set_id)
    return fhir_response(resource)
