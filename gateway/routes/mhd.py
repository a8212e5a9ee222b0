"""MHD: ITI-65 provide (POST /fhir), ITI-67 find, DocumentReference read, ITI-68 retrieve."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from consent.principal import Principal
from gateway.outcomes import fhir_response
from gateway.routes.common import base_url, fhir_body, run_use_case, services
from gateway.security import require_principal

router = APIRouter(dependencies=[Depends(require_principal)])


@router.post("/fhir", summary="ITI-65 Provide Document Bundle, or PPQ-4 (a Bundle of Consents)")
@router.post("/fhir/", include_in_schema=False)
async def transaction(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    answer = await run_use_case(request, services(request).transaction, principal=principal, body=body,
                                base_url=base_url(request))
    return fhir_response(answer, 200)


@router.get("/fhir/DocumentReference", summary="ITI-67 Find Document References")
async def find_document_references(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    bundle = await run_use_case(request, services(request).exchange.find, inline=True, principal=principal,
                                params=list(request.query_params.multi_items()), base_url=base_url(request))
    return fhir_response(bundle)


@router.get("/fhir/DocumentReference/{entry_id}", summary="Read one DocumentReference")
async def read_document_reference(entry_id: str, request: Request,
                                  principal: Principal = Depends(require_principal)) -> Response:
    resource = await run_use_case(request, services(request).exchange.read_reference, inline=True,
                                  principal=principal, entry_id=entry_id, base_url=base_url(request))
    return fhir_response(resource)


@router.get("/fhir/Binary/{entry_id}", summary="ITI-68 Retrieve Document")
async def retrieve_document(entry_id: str, request: Request,
                            principal: Principal = Depends(require_principal)) -> Response:
    retrieved = await run_use_case(request, services(request).exchange.retrieve, inline=True,
                                   principal=principal, entry_id=entry_id)
    return Response(retrieved.content, media_type=retrieved.content_type,
                    headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
