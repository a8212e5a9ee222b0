"""FHIR Patient ⇄ the MPI's PatientRecord (ITI-104 feed in; ITI-104, PDQm and PIXm answers out)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from adapters.cara.errors import InvalidInput
from adapters.cara.dates import fhir_instant
from adapters.cara.identity import AHVN13_SYSTEM
from adapters.cara.model import Identifier, OrganizationRef, PatientRecord
from adapters.cara.vocabulary import SPID_SYSTEM

PDQM_PATIENT_PROFILE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-pdqm-patient"
PIXM_OUT_PROFILE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-pixm-out-parameters"
# The birth name (CH EPR FHIR `ch-epr-fhir-birthname`: family 1..1 with the ISO 21090 qualifier BR; CH Core
# writes it as a name of `use` maiden). Either marks a fed name as the birth name; answers carry both.
EN_QUALIFIER = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier"
BIRTH_QUALIFIER = {"url": EN_QUALIFIER, "valueCode": "BR"}


def patient_from_resource(resource: dict[str, Any]) -> PatientRecord:
    """An ITI-104 Patient → record (pid not yet assigned). The SPID is the identifier in the SPID system."""
    identifiers = [Identifier(i["system"], i["value"]) for i in resource.get("identifier", [])
                   if i.get("system") and i.get("value")]
    spid = next((i.value for i in identifiers if i.system == SPID_SYSTEM), None)
    all_names = resource.get("name") or []
    births = [n for n in all_names if _is_birth_name(n)]
    if len(births) > 1:  # CH PDQm Patient: name:BirthName 0..1
        raise InvalidInput("a Patient has at most one birth name (use maiden / qualifier BR)", location="Patient.name")
    if births and not births[0].get("family"):  # ch-epr-fhir-birthname: family 1..1
        raise InvalidInput("the birth name needs its family name", location="Patient.name.family")
    names = [n for n in all_names if not _is_birth_name(n)] or [{}]
    official = next((n for n in names if n.get("use") == "official"), names[0])
    return PatientRecord(
        pid="",
        spid=spid,
        family=official.get("family"),
        given=tuple(official.get("given", [])),
        birth_date=resource.get("birthDate"),
        gender=resource.get("gender"),
        identifiers=tuple(i for i in identifiers if i.system != SPID_SYSTEM),
        birth_name=births[0]["family"] if births else None,
        managing_organization=_organization(resource.get("managingOrganization")),
    )


def _is_birth_name(name: dict[str, Any]) -> bool:
    qualifiers = (name.get("_family") or {}).get("extension") or []
    return name.get("use") == "maiden" or any(q.get("url") == EN_QUALIFIER and q.get("valueCode") == "BR"
                                              for q in qualifiers)


def _organization(reference: dict[str, Any] | None) -> OrganizationRef | None:
    """managingOrganization (already a valid R4 Reference): its reference, identifier and display."""
    if not reference:
        return None
    identifier = reference.get("identifier") or {}
    kept = OrganizationRef(reference=reference.get("reference"), identifier_system=identifier.get("system"),
                           identifier_value=identifier.get("value"), display=reference.get("display"))
    if not (kept.reference or kept.identifier_value or kept.display):
        raise InvalidInput("managingOrganization names the organisation by reference, identifier or display",
                           location="Patient.managingOrganization")
    if kept.identifier_system and not kept.identifier_value:
        raise InvalidInput("managingOrganization.identifier needs its value",
                           location="Patient.managingOrganization.identifier.value")
    return kept


def patient_resource(record: PatientRecord, *, community_oid: str) -> dict[str, Any]:
    identifiers = [{"system": f"urn:oid:{community_oid}", "value": record.pid}]
    if record.spid:
        identifiers.append({"system": SPID_SYSTEM, "value": record.spid})
    identifiers += [{"system": i.system, "value": i.value} for i in record.identifiers]
    resource: dict[str, Any] = {"resourceType": "Patient", "id": record.pid, "identifier": identifiers}
    if record.family or record.given:
        name: dict[str, Any] = {}
        if record.family:
            name["family"] = record.family
        if record.given:
            name["given"] = list(record.given)
        resource["name"] = [name]
    if record.birth_name:
        resource.setdefault("name", []).append({"use": "maiden", "family": record.birth_name,
                                                "_family": {"extension": [dict(BIRTH_QUALIFIER)]}})
    if record.gender:
        resource["gender"] = record.gender
    if record.birth_date:
        resource["birthDate"] = record.birth_date
    if record.managing_organization:
        resource["managingOrganization"] = _organization_reference(record.managing_organization)
    return resource


def _organization_reference(organization: OrganizationRef) -> dict[str, Any]:
    reference: dict[str, Any] = {}
    if organization.reference:
        reference["reference"] = organization.reference
    if organization.identifier_value:
        reference["identifier"] = ({"system": organization.identifier_system} if organization.identifier_system
                                   else {}) | {"value": organization.identifier_value}
    if organization.display:
        reference["display"] = organization.display
    return reference


MR_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def disclosed(identifiers) -> list[Identifier]:
    """Local identifiers an answer may carry: never the AHVN13 (EPRA: the EPR identifies patients by
    the EPR-SPID; the AHVN13 is only a check the MPI makes) and never the SPID twice."""
    return [i for i in dict.fromkeys(identifiers) if i.system not in (SPID_SYSTEM, AHVN13_SYSTEM)]


def pdqm_patient(record: PatientRecord, *, community_oid: str, identifiers, replaced_by: str | None = None,
                 replaces: tuple[str, ...] = ()) -> dict[str, Any]:
    """A CH PDQm Patient (as the official QueryResponse): the SPID, then the MPI-PID and the local ids
    typed MR. `identifiers` are the local ids of the patient and of every patient merged into it."""
    ids: list[dict[str, Any]] = []
    if record.spid:
        ids.append({"system": SPID_SYSTEM, "value": record.spid})
    ids.append({"type": MR_TYPE, "system": f"urn:oid:{community_oid}", "value": record.pid})
    ids += [{"type": MR_TYPE, "system": i.system, "value": i.value} for i in disclosed(identifiers)]
    resource = patient_resource(replace(record, spid=None, identifiers=()), community_oid=community_oid)
    resource["identifier"] = ids
    resource["meta"] = {"profile": [PDQM_PATIENT_PROFILE]}
    resource["active"] = replaced_by is None
    links = [{"other": {"reference": f"Patient/{replaced_by}"}, "type": "replaced-by"}] if replaced_by else []
    links += [{"other": {"reference": f"Patient/{pid}"}, "type": "replaces"} for pid in replaces]
    if links:
        resource["link"] = links
    return resource


def pix_parameters(pid: str, targets: list[Identifier]) -> dict[str, Any]:
    """The ITI-83 answer as CH PIXm OUT Parameters has it: at most two `targetIdentifier`s (the domains
    asked for, 1..2 by CH PIXm IN) and no `targetId` (0..0). `pid` is kept for callers' symmetry."""
    if len(targets) > 2:
        raise ValueError("CH PIXm answers at most two target identifiers")
    parameters = [{"name": "targetIdentifier", "valueIdentifier": {"system": i.system, "value": i.value}}
                  for i in targets]
    answer: dict[str, Any] = {"resourceType": "Parameters", "meta": {"profile": [PIXM_OUT_PROFILE]}}
    if parameters:  # FHIR JSON has no empty arrays
        answer["parameter"] = parameters
    return answer


def patient_reference(parameter: dict[str, Any]) -> tuple[str, str] | None:
    """A $merge parameter: ("pid", <MPI-PID>) from valueReference Patient/<pid>, ("identifier",
    "<system>|<value>") from valueIdentifier; None when it is neither."""
    reference = (parameter.get("valueReference") or {}).get("reference")
    if isinstance(reference, str) and reference.startswith("Patient/") and len(reference) > 8:
        return "pid", reference.removeprefix("Patient/")
    value = parameter.get("valueIdentifier") or {}
    if isinstance(value.get("system"), str) and isinstance(value.get("value"), str):
        return "identifier", f"{value['system']}|{value['value']}"
    return None


def with_version(resource: dict[str, Any], version: tuple[int, Any] | None) -> dict[str, Any]:
    """The Patient with meta.versionId and meta.lastUpdated (the MPI row's version and update time)."""
    if version is None:
        return resource
    number, written = version
    resource["meta"] = {**resource.get("meta", {}), "versionId": str(number), "lastUpdated": fhir_instant(written)}
    return resource


# -- CH PDQm: too many matches ------------------------------------------------------------------------
# CH PDQm answers at most five patients (the match output Bundle's `entry[Patient]` 0..5). When more
# match, it shows none: a searchset with total 0 and one OperationOutcome (ChPdqmResponseMoreAttributes-
# Requested, `search.mode` outcome) asking for the attributes that would narrow the query.
MAX_PATIENTS_SHOWN = 5
MORE_ATTRIBUTES_PROFILE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-pdqm-moreattributesrequested"
XCPD_MORE_ATTRIBUTES = "urn:oid:1.3.6.1.4.1.19376.1.2.27.1"
# Each criterion a query may lack: the Patient element that carries it, and its code in the CH value set
# ChPdqmMoreAttributesRequested when it has one (the set, from XCPD, takes name and birth date as given;
# it has no code for them, nor for an identifier: those issues name the element only).
CRITERIA = {"family": ("Patient.name.family", None), "given": ("Patient.name.given", None),
            "birthdate": ("Patient.birthDate", None),
            "gender": ("Patient.gender", (XCPD_MORE_ATTRIBUTES, "LivingSubjectAdministrativeGenderRequested")),
            "identifier": ("Patient.identifier", None)}


def more_attributes_wanted(given: set[str]) -> list[str]:
    """The criteria to ask for, given those the query had: the demographics it lacks, else an identifier."""
    lacking = [c for c in ("family", "given", "birthdate", "gender") if c not in given]
    return lacking or ["identifier"]


def too_many_matches(*, self_url: str, wanted: list[str]) -> dict[str, Any]:
    """The CH PDQm answer when more than MAX_PATIENTS_SHOWN patients match (ITI-78 and ITI-119 alike)."""
    issues = []
    for criterion in wanted:
        expression, code = CRITERIA[criterion]
        issue: dict[str, Any] = {"severity": "warning", "code": "incomplete",
                                 "diagnostics": f"more than {MAX_PATIENTS_SHOWN} patients match: add {expression}",
                                 "expression": [expression]}
        if code is not None:
            issue["details"] = {"coding": [{"system": code[0], "code": code[1], "display": code[1]}]}
        issues.append(issue)
    outcome_id = str(uuid.uuid4())
    outcome = {"resourceType": "OperationOutcome", "id": outcome_id, "meta": {"profile": [MORE_ATTRIBUTES_PROFILE]},
               "issue": issues}
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": 0,
            "link": [{"relation": "self", "url": self_url}],
            "entry": [{"fullUrl": f"urn:uuid:{outcome_id}", "resource": outcome, "search": {"mode": "outcome"}}]}
