"""The patient's trail (ITI-81) names whom each policy names: CH:ATC PolicyAuditEvent requires
`entity:Resource.name` (1..1) for the professional, group or representative of a policy (and the
patient of their own 201). Names come from the directory (EPR_PORTAL_DIRECTORY), the MPI (the patient's
own, added when the trail is read: the ledger keeps no patient names), the acting user's own; where none
is known, the identifier value."""

import json

import orjson
import pytest

from conftest import HCP_GLN, SPID, grant_consent, running_gateway
from functional.test_consent_http import OTHER_GLN, representative_consent

GROUP = "urn:oid:2.16.756.5.30.1.999.77"
ROLE_SYSTEMS = ("urn:oid:2.16.756.5.30.1.127.3.10.6", "urn:oid:2.16.756.5.30.1.127.3.10.14")


@pytest.fixture
def directory_gateway(tmp_path, database_url):
    directory = tmp_path / "directory.json"
    directory.write_text(json.dumps({
        "professionals": [{"gln": HCP_GLN, "name": "Dr. med. Luc Favre", "organisation": "Hôpital de Sion"}],
        "groups": [{"id": GROUP, "name": "Hôpital de Sion, médecine interne"}]}))
    with running_gateway(tmp_path, database_url, portal_directory=directory) as running:
        yield running


def group_consent() -> dict:
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal", template=302, end="2099-12-31")
    identifier = consent["provision"]["actor"][0]["reference"]["identifier"]
    identifier.pop("system")
    identifier["type"]["coding"][0]["code"] = "urn:oasis:names:tc:xspa:1.0:subject:organization-id"
    identifier["value"] = GROUP
    return consent


def subjects(trail: dict) -> list[tuple[str, str, str, str | None]]:
    """(ATC code, role, identifier value, name) of every policy subject entity in the trail."""
    found = []
    for entry in trail["entry"]:
        event = entry["resource"]
        if not event["subtype"][0]["code"].startswith("ATC_POL"):
            continue
        for entity in event["entity"]:
            if entity["type"]["code"] == "2" and entity["role"].get("system") in ROLE_SYSTEMS:
                found.append((event["subtype"][0]["code"], entity["role"]["code"],
                              entity["what"]["identifier"]["value"], entity.get("name")))
    return sorted(found)


def test_every_policy_subject_in_the_trail_carries_its_name(directory_gateway):
    gateway = directory_gateway
    gateway.register_patient()  # onboarding 201/202/203, then the patient's 301 grant to HCP_GLN
    patient = gateway.tokens.headers(gateway.tokens.patient())
    for consent in (group_consent(), representative_consent("rep-4711"),
                    grant_consent(spid=SPID, gln=OTHER_GLN, level="normal")):
        response = gateway.client.post("/fhir/Consent", content=orjson.dumps(consent), headers=patient)
        assert response.status_code == 201, response.text

    trail = gateway.client.get("/fhir/AuditEvent", params={
        "entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}", "_count": "100"}, headers=patient)

    assert trail.status_code == 200, trail.text
    create = "ATC_POL_CREATE_AUT_PART_AL"
    assert subjects(trail.json()) == sorted([
        (create, "PAT", SPID, "Anna Muster"),  # the patient's own 201: their name from the MPI
        (create, "HCP", HCP_GLN, "Dr. med. Luc Favre"),  # the directory's professional
        (create, "GRP", GROUP, "Hôpital de Sion, médecine interne"),  # the directory's group
        (create, "REP", "rep-4711", "rep-4711"),  # a representative nobody named: the identifier value
        (create, "HCP", OTHER_GLN, OTHER_GLN),  # a GLN outside the directory: the GLN
    ])
    policy_events = [e["resource"] for e in trail.json()["entry"]
                     if e["resource"]["subtype"][0]["code"].startswith("ATC_POL")]
    assert len(policy_events) == 7  # the five above, 202 and 203 (addressed to everyone: no subject entity)


def test_the_ledger_keeps_the_directory_name_but_not_the_mpi_name(directory_gateway):
    gateway = directory_gateway
    gateway.register_patient()

    stored = [e for e in gateway.services.auditor.ledger.all_records()
              if any(c.get("code") == "ATC_POL_CREATE_AUT_PART_AL" for c in e.get("subtype", []))]

    names = {entity["role"]["code"]: entity.get("name") for event in stored for entity in event.get("entity", [])
             if entity["role"].get("system") == ROLE_SYSTEMS[0]}
    # The MPI's demographics stay in the MPI: the ledger names the patient by the SPID standing in for a
    # name (PolicyAuditEvent's 1..1); the trail puts the MPI's name in when it is read.
    assert names == {"PAT": SPID, "HCP": "Dr. med. Luc Favre"}


def test_a_representative_changing_their_own_policy_is_named_by_their_own_name(directory_gateway):
    gateway = directory_gateway
    gateway.register_patient(grant_hcp=None)
    patient = gateway.tokens.headers(gateway.tokens.patient())
    created = gateway.client.post("/fhir/Consent", content=orjson.dumps(representative_consent("rep-4711")),
                                  headers=patient)
    assert created.status_code == 201, created.text
    representative = gateway.tokens.headers(gateway.tokens.mint(role="REP", user_id="rep-4711", spid=SPID,
                                                                name="Paul Muster"))
    removed = gateway.client.delete(f"/fhir/Consent/{created.json()['id']}", headers=representative)
    assert removed.status_code in (200, 204), removed.text

    trail = gateway.client.get("/fhir/AuditEvent", params={
        "entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"}, headers=patient)

    assert [s for s in subjects(trail.json()) if s[1] == "REP"] == [
        ("ATC_POL_CREATE_AUT_PART_AL", "REP", "rep-4711", "rep-4711"),
        ("ATC_POL_REMOVE_AUT_PART_AL", "REP", "rep-4711", "Paul Muster"),
    ]
