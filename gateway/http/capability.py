"""The CapabilityStatement, generated from the app's routes and the search parameter list, so that it
declares what is served and nothing else (a test compares it with the routes and asks each parameter).

Every endpoint under /fhir becomes an interaction or an operation by the shape of its path:
`POST /fhir` transaction; `/fhir/{Type}`: GET search-type, POST create, PUT (conditional) update,
DELETE (conditional) delete; `/fhir/{Type}/{id}`: GET read, PUT update, DELETE delete;
`/fhir/{Type}/{id}/_history/{vid}` vread; `/fhir/{Type}/$op` and `/fhir/{Type}/{id}/$op` operations.
A route added on another branch (e.g. `Patient/$match`) appears without editing this module.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from gateway.http.route_table import every_route
from gateway.http.search_parameters import COMMON, SEARCH_RESULT, search_for_path

__all__ = ["capability_statement", "INSTANTIATES", "IMPLEMENTATION_GUIDE", "OAUTH_URIS"]

CH_EPR = "http://fhir.ch/ig/ch-epr-fhir"
IMPLEMENTATION_GUIDE = f"{CH_EPR}/ImplementationGuide/ch.fhir.ig.ch-epr-fhir"
# The CH EPR FHIR CapabilityStatements of the actors this gateway implements.
INSTANTIATES = tuple(f"{CH_EPR}/CapabilityStatement/{actor}" for actor in (
    "CH.MHD.DocumentRecipient", "CH.MHD.DocumentResponder", "CH.PIXm.Manager", "CH.PDQm.Supplier",
    "CH.PPQm.PolicyRepository", "PatientAuditRecordRepositoryCapabilityStatement"))  # the last: CH:ATC (ITI-81)
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

PROFILES = {
    "DocumentReference": f"{CH_EPR}/StructureDefinition/ch-mhd-documentreference-comprehensive",
    "List": f"{CH_EPR}/StructureDefinition/ch-mhd-submissionset-comprehensive",
    "Consent": f"{CH_EPR}/StructureDefinition/PpqmConsent",
    "Patient": f"{CH_EPR}/StructureDefinition/ch-pdqm-patient",
    "AuditEvent": f"{CH_EPR}/StructureDefinition/ChAtcAuditEvent",
}
OPERATIONS = {
    "ihe-pix": "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
    "match": "http://hl7.org/fhir/OperationDefinition/Patient-match",
    "merge": "http://hl7.org/fhir/OperationDefinition/Patient-merge",
}
PAST_VERSIONS_KEPT = frozenset({"DocumentReference"})
# Types whose stored resources carry meta.versionId / lastUpdated, ETag and Last-Modified (versioning.py).
VERSIONED = frozenset({"Consent", "DocumentReference", "Patient"})
# An update of an unknown id creates it: PPQ-3 (a policy set named by the client), ITI-104 (conditional).
UPDATE_CREATES = frozenset({"Consent", "Patient"})
_INTERACTION_ORDER = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                      "search-type")


def capability_statement(routes, *, base: str, date: str, version: str, oauth: dict[str, str] | None = None,
                         cors: bool = False) -> dict[str, Any]:
    resources: dict[str, dict[str, Any]] = {}
    system: dict[str, str] = {}
    for route in every_route(routes):
        if route.path.startswith("/fhir") and route.path != "/fhir/metadata" and "/.well-known/" not in route.path:
            for method in sorted((route.methods or set()) - {"HEAD"}):
                _declare(route, method, resources, system)
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "CH EPR FHIR: MHD, PIXm/PDQm, CH:PPQm, CH:ATC. Every search also answers POST "
                         "[type]/_search (form body), every GET also HEAD; Prefer: handling=lenient. "
                         "Versioned types: ETag W/\"n\", If-Match (412 when stale), If-None-Match (304), "
                         "Prefer: return=minimal|representation|OperationOutcome on create and update. "
                         "Binary/{id}: the bytes, or a FHIR Binary with Accept: application/fhir+json.",
        "security": _security(oauth, cors),
        "resource": [_resource(kind, declared) for kind, declared in sorted(resources.items())],
        "interaction": [{"code": code, "documentation": doc} for code, doc in sorted(system.items())],
    }
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "epr-gateway",
        "kind": "instance",
        "instantiates": list(INSTANTIATES),
        "software": {"name": "epr-gateway", "version": version},
        "implementation": {"description": "Valais EPR gateway into the cara shared record", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "implementationGuide": [IMPLEMENTATION_GUIDE],
        "rest": [rest],
    }


def _declare(route: Route, method: str, resources: dict, system: dict) -> None:
    parts = route.path.removeprefix("/fhir").strip("/").split("/")
    doc = _documentation(route)
    if parts == [""]:
        if method == "POST":
            system["transaction"] = doc
        return
    declared = resources.setdefault(parts[0], {"interaction": {}, "operation": {}, "conditional": set(),
                                               "search": search_for_path(f"/fhir/{parts[0]}")})
    last = parts[-1]
    if last.startswith("$"):
        declared["operation"][last[1:]] = doc
        return
    code = None
    if len(parts) == 1:
        code = {"GET": "search-type", "POST": "create", "PUT": "update", "DELETE": "delete"}.get(method)
        if method in ("PUT", "DELETE"):
            declared["conditional"].add(method)
    elif len(parts) == 2:
        code = {"GET": "read", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}.get(method)
    elif parts[2] == "_history":
        code = "vread" if len(parts) == 4 else "history-instance"
    if code is not None:
        declared["interaction"].setdefault(code, doc)


def _resource(kind: str, declared: dict[str, Any]) -> dict[str, Any]:
    interactions = sorted(declared["interaction"].items(), key=lambda item: _INTERACTION_ORDER.index(item[0]))
    resource: dict[str, Any] = {"type": kind}
    if kind in PROFILES:
        resource["profile"] = PROFILES[kind]
    resource["interaction"] = [{"code": code, **({"documentation": doc} if doc else {})} for code, doc in interactions]
    if kind in VERSIONED:
        # If-Match on an update (412 when stale) is version-aware updating; without vread or update, the
        # type still carries meta.versionId and ETags.
        resource["versioning"] = ("versioned-update" if "vread" in declared["interaction"]
                                  and "update" in declared["interaction"] else "versioned")
        # vread of a past version: CH:MHD-1 keeps every metadata version of a DocumentReference; a
        # policy set and a patient keep their current version only (an older one is a 404).
        resource["readHistory"] = kind in PAST_VERSIONS_KEPT
        if "read" in declared["interaction"]:
            resource["conditionalRead"] = "not-match"  # If-None-Match → 304 (no If-Modified-Since)
    if "update" in declared["interaction"]:
        resource["updateCreate"] = kind in UPDATE_CREATES
    if "PUT" in declared["conditional"]:
        resource["conditionalUpdate"] = True
    if "DELETE" in declared["conditional"]:
        resource["conditionalDelete"] = "single"
    search = declared["search"]
    if search is not None and "search-type" in declared["interaction"]:
        resource["searchParam"] = [{"name": p.name, "type": p.type, "documentation": p.documentation}
                                   for p in (*search.params, *SEARCH_RESULT, *COMMON)]
    if declared["operation"]:
        resource["operation"] = [{"name": name, "definition": OPERATIONS.get(name, f"urn:epr-gateway:operation:{name}"),
                                  **({"documentation": doc} if doc else {})}
                                 for name, doc in sorted(declared["operation"].items())]
    return resource


def _documentation(route: Route) -> str:
    summary = getattr(route, "summary", None)
    if summary:
        return summary
    doc = (getattr(route.endpoint, "__doc__", None) or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else ""


def _security(oauth: dict[str, str] | None, cors: bool) -> dict[str, Any]:
    security: dict[str, Any] = {
        "cors": cors,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}]}],
        "description": "IUA (CH:EPR) bearer tokens from trusted issuers; mutual TLS for systems; "
                       "see /.well-known/smart-configuration",
    }
    uris = [{"url": name, "valueUri": uri} for name, uri in (oauth or {}).items() if uri]
    if uris:
        security["extension"] = [{"url": OAUTH_URIS, "extension": uris}]
    return security
