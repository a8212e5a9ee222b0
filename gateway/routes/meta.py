"""The public routes: CapabilityStatement and health. Nothing here touches patient data."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from adapters.cara.mhd_search import SUPPORTED
from adapters.cara.store.database import is_reachable
from gateway.outcomes import fhir_response
from gateway.routes.common import base_url, services

router = APIRouter()
_STARTED = datetime.now(UTC).isoformat(timespec="seconds")


@router.get("/fhir/metadata", summary="CapabilityStatement")
async def capability_statement(request: Request) -> Response:
    return fhir_response(capability(base_url(request)))


@router.get("/health/live")
async def live() -> Response:
    return fhir_response({"status": "live"})


@router.get("/health/ready")
async def ready(request: Request) -> Response:
    ok = await run_in_threadpool(is_reachable, services(request).engine)
    return fhir_response({"status": "ready" if ok else "store unreachable"}, 200 if ok else 503)


def capability(base: str) -> dict:
    search_params = [{"name": name, "type": _param_type(name)} for name in SUPPORTED if not name.startswith("_")]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _STARTED,
        "kind": "instance",
        "software": {"name": "epr-gateway", "version": "0.1.0"},
        "implementation": {"description": "Valais EPR gateway into the cara shared record", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "instantiates": [
            "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentRecipient",
            "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder",
        ],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": False,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                         "code": "OAuth"}]}],
                "description": "IUA (CH:EPR) bearer tokens; mutual TLS for systems",
            },
            "interaction": [{"code": "transaction",
                             "documentation": "ITI-65 Provide Document Bundle; PPQ-4 (a Bundle of Consents)"}],
            "resource": [
                {"type": "DocumentReference",
                 "profile": "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-mhd-documentreference-comprehensive",
                 "interaction": [{"code": "read"}, {"code": "search-type", "documentation": "ITI-67"}],
                 "searchParam": search_params},
                {"type": "Binary", "interaction": [{"code": "read", "documentation": "ITI-68"}]},
                {"type": "Patient", "interaction": [{"code": "update", "documentation": "ITI-104 (conditional)"}],
                 "conditionalUpdate": True},
                {"type": "Consent", "profile": "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/PpqmConsent",
                 "interaction": [{"code": "create", "documentation": "PPQ-3"}, {"code": "update"}, {"code": "delete"},
                                 {"code": "search-type", "documentation": "PPQ-5"}],
                 "searchParam": [{"name": "patient:identifier", "type": "token"}, {"name": "identifier", "type": "token"}]},
                {"type": "AuditEvent", "interaction": [{"code": "search-type", "documentation": "ITI-81 (CH:ATC)"}],
                 "searchParam": [{"name": "entity.identifier", "type": "token"}, {"name": "date", "type": "date"}]},
                {"type": "Communication", "interaction": [{"code": "search-type",
                                                           "documentation": "the patient's notifications"}],
                 "searchParam": [{"name": "recipient.identifier", "type": "token"}]},
            ],
        }],
    }


def _param_type(name: str) -> str:
    if name in ("date", "period"):
        return "date"
    if name.startswith("author."):
        return "string"
    return "token"
