"""CH:PPQm (PPQ-3 add/update/remove, PPQ-5 retrieve) and the patient's notifications."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from consent.principal import Principal
from gateway.http.outcomes import fhir_response
from gateway.http.routes.common import base_url, fhir_body, run_use_case, services
from gateway.http.security import require_principal
from gateway.http.versioning import if_match, read_response, version_number, write_response

router = APIRouter(dependencies=[Depends(require_principal)])


@router.post("/fhir/Consent", summary="PPQ-3 add a policy set")
async def add_consent(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    consent, _ = await run_use_case(request, services(request).policies.add, principal=principal, body=body)
    return write_response(request, consent, 201, base_url=base_url(request))


@router.put("/fhir/Consent", summary="PPQ-3 update a policy set: Consent?identifier=<policySetId>")
async def update_consent_by_identifier(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    consent, created = await run_use_case(request, services(request).policies.replace_by_identifier,
                                          principal=principal, identifier=request.query_params.get("identifier"),
                                          body=body, if_match=if_match(request))
    return write_response(request, consent, 201 if created else 200, base_url=base_url(request))


@router.delete("/fhir/Consent", summary="PPQ-3 remove a policy set: Consent?identifier=<policySetId>")
async def delete_consent_by_identifier(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    await run_use_case(request, services(request).policies.remove_by_identifier, principal=principal,
                       identifier=request.query_params.get("identifier"), if_match=if_match(request))
    return Response(status_code=204)


@router.put("/fhir/Consent/{consent_id}", summary="PPQ-3 update a policy set")
async def update_consent(consent_id: str, request: Request,
                         principal: Principal = Depends(require_principal)) -> Response:
    body = await fhir_body(request)
    consent, created = await run_use_case(request, services(request).policies.replace, principal=principal,
                                          consent_id=consent_id, body=body, if_match=if_match(request))
    return write_response(request, consent, 201 if created else 200, base_url=base_url(request))


@router.delete("/fhir/Consent/{consent_id}", summary="PPQ-3 remove a policy set")
async def delete_consent(consent_id: str, request: Request,
                         principal: Principal = Depends(require_principal)) -> Response:
    await run_use_case(request, services(request).policies.remove, principal=principal, consent_id=consent_id,
                       if_match=if_match(request))
    return Response(status_code=204)


@router.get("/fhir/Consent/{consent_id}", summary="Read a policy set (as PPQ-5 by identifier)")
async def read_consent(consent_id: str, request: Request, principal: Principal = Depends(require_principal)) -> Response:
    consent = await run_use_case(request, services(request).policies.read, principal=principal, consent_id=consent_id)
    return read_response(request, consent)


@router.get("/fhir/Consent/{consent_id}/_history/{version_id}", summary="Read a version of a policy set "
            "(the current one is kept)")
async def vread_consent(consent_id: str, version_id: str, request: Request,
                        principal: Principal = Depends(require_principal)) -> Response:
    consent = await run_use_case(request, services(request).policies.read, principal=principal, consent_id=consent_id,
                                 version=version_number(version_id))
    return read_response(request, consent)


@router.get("/fhir/Consent", summary="PPQ-5 retrieve policy sets")
async def retrieve_consents(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    bundle = await run_use_case(request, services(request).policies.retrieve, principal=principal,
                                params=list(request.query_params.multi_items()), base_url=base_url(request))
    return fhir_response(bundle)


@router.get("/fhir/Communication", summary="The patient's notifications (emergency accesses)")
async def notifications(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    bundle = await run_use_case(request, services(request).policies.notifications, principal=principal,
                                params=list(request.query_params.multi_items()), base_url=base_url(request))
    return fhir_response(bundle)
