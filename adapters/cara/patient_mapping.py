"""FHIR Patient ⇄ the MPI's PatientRecord (ITI-104 feed in, Patient resources out)."""

from __future__ import annotations

from typing import Any

from adapters.cara.model import Identifier, PatientRecord
from adapters.cara.vocabulary import SPID_SYSTEM


def patient_from_resource(resource: dict[str, Any]) -> PatientRecord:
    """An ITI-104 Patient → record (pid not yet assigned). The SPID is the identifier in the SPID system."""
    identifiers = [Identifier(i["system"], i["value"]) for i in resource.get("identifier", [])
                   if i.get("system") and i.get("value")]
    spid = next((i.value for i in identifiers if i.system == SPID_SYSTEM), None)
    names = resource.get("name") or [{}]
    official = next((n for n in names if n.get("use") == "official"), names[0])
    return PatientRecord(
        pid="",
        spid=spid,
        family=official.get("family"),
        given=tuple(official.get("given", [])),
        birth_date=resource.get("birthDate"),
        gender=resource.get("gender"),
        identifiers=tuple(i for i in identifiers if i.system != SPID_SYSTEM),
    )


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
    if record.gender:
        resource["gender"] = record.gender
    if record.birth_date:
        resource["birthDate"] = record.birth_date
    return resource
