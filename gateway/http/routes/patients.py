"""Patient identity: ITI-104 feed, ITI-83 PIXm query, ITI-78 PDQm search and read, $merge/$unmerge,
and the identity review list (`/admin/identity-reviews`, PADM or DADM). The fixed paths are declared
before `Patient/{pid}` so that `$ihe-pix` is never read as an id."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from consent.principal import Principal
from gateway.http.outcomes import fhir_response
from gateway.http.routes.common import base_url, fhir_body, run_use_case, services
from gateway.http.security import require_principal
from gateway.http.versioning import read_response, write_response

router = APIRouter(dependencies=[Depends(require_principal)])


@router.put("/fhir/Patient", summary="ITI-104 Patient Identity Feed")
async def patient_identity_feed(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    resource, created = await run_use_case(
        request, services(request).identities.register_patient, principal=principal,
        identifier_param=request.query_params.get("identifier"), body=body)
    return write_response(request, resource, 201 if created else 200, base_url=base_url(request))


@router.get("/fhir/Patient/$ihe-pix", summary="ITI-83 Mobile Patient Identifier Cross-reference Query")
async def pix_query(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    answer = await run_use_case(request, services(request).identities.pix, principal=principal,
                                params=request.query_params.multi_items())
    return fhir_response(answer)


@router.post("/fhir/Patient/$match", summary="ITI-119 Patient Demographics Match")
async def patient_match(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    return fhir_response(await run_use_case(request, services(request).identities.match, principal=principal,
                                            body=body, base_url=base_url(request)))


@router.post("/fhir/Patient/$merge", summary="Merge two patients of the MPI (DADM, PADM, TCU)")
async def merge(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    return fhir_response(await run_use_case(request, services(request).identities.merge, principal=principal,
                                            body=body))


@router.post("/fhir/Patient/$unmerge", summary="Undo a merge (DADM, PADM, TCU)")
async def unmerge(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    return fhir_response(await run_use_case(request, services(request).identities.unmerge, principal=principal,
                                            body=body))


@router.get("/fhir/Patient", summary="ITI-78 Mobile Patient Demographics Query")
async def pdq_search(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    answer = await run_use_case(request, services(request).identities.pdq, principal=principal,
                                params=request.query_params.multi_items(), base_url=base_url(request))
    return fhir_response(answer)


@router.get("/fhir/Patient/{pid}", summary="ITI-78 read a Patient")
async def patient_read(pid: str, request: Request, principal: Principal = Depends(require_principal)) -> Response:
    return read_response(request, await run_use_case(request, services(request).identities.read, principal=principal,
                                                      pid=pid))


@router.get("/admin/identity-reviews", summary="Open identity review cases (PADM, DADM)")
async def identity_reviews(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    return fhir_response(await run_use_case(request, services(request).identities.reviews, principal=principal,
                                            params=list(request.query_params.multi_items())))


@router.post("/admin/identity-reviews/{review_id}/resolve", summary="Close an identity review case (PADM, DADM)")
async def resolve_identity_review(review_id: str, request: Request,
                                  principal: Principal = Depends(require_principal)) -> Response:
    return fhir_response(await run_use_case(request, services(request).identities.resolve_review,
                                            principal=principal, review_id=review_id))
