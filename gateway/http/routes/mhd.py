"""MHD: ITI-65 provide (POST /fhir), ITI-67 find, DocumentReference read, ITI-68 retrieve, CH:MHD-1 update
(PUT DocumentReference, or a Bundle of PUTs posted to /fhir)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response
from starlette.routing import Route

from consent.principal import Principal
from gateway.http.document_headers import (
    BINARY_RESOURCE_HEADERS,
    binary_resource,
    retrieve_headers,
    wants_binary_resource,
)
from gateway.http.outcomes import fhir_response
from gateway.http.routes.common import base_url, fhir_body, run_use_case, services
from gateway.http.security import authenticated, require_principal
from gateway.http.versioning import if_match, read_response, version_number, write_response

router = APIRouter(dependencies=[Depends(require_principal)])


@router.post("/fhir", summary="ITI-65 Provide Document Bundle, or PPQ-4 (a Bundle of Consents)")
@router.post("/fhir/", include_in_schema=False)
async def transaction(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    answer = await run_use_case(request, services(request).transactions.submit, principal=principal, body=body,
                                base_url=base_url(request))
    return fhir_response(answer, 200)


@router.put("/fhir/DocumentReference/{entry_id}", summary="CH:MHD-1 Update Document Metadata")
async def update_document_reference(entry_id: str, request: Request,
                                    principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    resource = await run_use_case(request, services(request).metadata.update_reference, principal=principal,
                                  entry_id=entry_id, body=body, base_url=base_url(request),
                                  if_match=if_match(request))
    return write_response(request, resource, 200, base_url=base_url(request))


# The three reads are the gateway's hottest exchanges: plain Starlette routes behind the same door
# (`authenticated`), without FastAPI's per-request dependency solving and route walk (a fair share
# of a search's time in process: bench/README.md). The middleware and error handlers are the
# app's, as for every route; the deny-by-default test checks these are guarded too.
async def find_document_references(request: Request, principal: Principal) -> Response:
    """ITI-67 Find Document References."""
    bundle = await run_use_case(request, services(request).exchange.find, inline=True, principal=principal,
                                params=list(request.query_params.multi_items()), base_url=base_url(request))
    return fhir_response(bundle)


async def read_document_reference(request: Request, principal: Principal) -> Response:
    """Read one DocumentReference."""
    resource = await run_use_case(request, services(request).exchange.read_reference, inline=True,
                                  principal=principal, entry_id=request.path_params["entry_id"],
                                  base_url=base_url(request))
    return read_response(request, resource)


async def vread_document_reference(request: Request, principal: Principal) -> Response:
    """Read one version of a DocumentReference (CH:MHD-1 keeps every version)."""
    resource = await run_use_case(request, services(request).exchange.read_reference, inline=True,
                                  principal=principal, entry_id=request.path_params["entry_id"],
                                  base_url=base_url(request), version=version_number(request.path_params["vid"]))
    return read_response(request, resource)


async def retrieve_document(request: Request, principal: Principal) -> Response:
    """ITI-68 Retrieve Document: the bytes (MHD), or a FHIR Binary when the client asks for FHIR JSON."""
    entry_id = request.path_params["entry_id"]
    retrieved = await run_use_case(request, services(request).exchange.retrieve, inline=True,
                                   principal=principal, entry_id=entry_id, base_url=base_url(request))
    if wants_binary_resource(request):
        return fhir_response(binary_resource(retrieved, entry_id=entry_id), headers=BINARY_RESOURCE_HEADERS)
    media_type, headers = retrieve_headers(retrieved.content_type, entry_id=entry_id)
    return Response(retrieved.content, media_type=media_type, headers=headers)


reads = [
    Route("/fhir/DocumentReference", authenticated(find_document_references), methods=["GET"]),
    Route("/fhir/DocumentReference/{entry_id}", authenticated(read_document_reference), methods=["GET"]),
    Route("/fhir/DocumentReference/{entry_id}/_history/{vid}", authenticated(vread_document_reference),
          methods=["GET"]),
    Route("/fhir/Binary/{entry_id}", authenticated(retrieve_document), methods=["GET"]),
]
