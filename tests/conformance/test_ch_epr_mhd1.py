"""CH:MHD-1 with the IG's own examples (vendored in ig/, see ig/README.md): the update request Bundle is
accepted, and every CH-MHD-1 record the gateway writes conforms to the Document Responder's audit profile,
checked mechanically from its differential (cardinalities, patterns, closed slices)."""

import copy
import json

import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from conftest import FIXTURES
from profile_check import IG, check, load_profile

RESPONDER = "ch-mhd-updatedocumentmetadata-audit-responder"
EXT_DELETION = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-ext-deletionstatus"


@pytest.fixture
def provided(gateway):
    """The official provide example stored; returns (its entry id, the IG's update Bundle naming it)."""
    raw = (FIXTURES / "ch-epr-fhir" / "Bundle-BundleProvideDocument.json").read_bytes()
    spid = json.loads(raw)["entry"][0]["resource"]["subject"]["identifier"]["value"]
    gateway.register_patient(spid=spid, local_id="8734")
    answer = gateway.client.post("/fhir", content=raw, headers=gateway.as_hcp()).json()
    entry_id = next(e["response"]["location"] for e in answer["entry"]
                    if "/DocumentReference/" in e["response"]["location"]).rsplit("/", 1)[1]
    update = json.loads((IG / "Bundle-CHMhd1UpdateDocumentMetadataTransactionRequestExample.json").read_text())
    # The example names its DocumentReference DocRefPdf; the gateway gave the stored one its own id.
    update["entry"][0]["resource"]["id"] = entry_id
    update["entry"][0]["request"]["url"] = f"DocumentReference/{entry_id}"
    return entry_id, update


def mhd1_events(gateway) -> list[dict]:
    return [e for e in gateway.services.auditor.ledger.all_records()
            if any(c["code"] == "CH-MHD-1" for c in e["subtype"])]


def test_the_igs_profile_check_accepts_the_igs_example_and_refuses_a_broken_copy():
    example = json.loads((IG / "AuditEvent-ChAuditEventChMhd1ResponderExample.json").read_text())
    assert check(example, load_profile(RESPONDER)) == []
    broken = copy.deepcopy(example)
    broken["agent"] = broken["agent"][:1] + broken["agent"][2:]  # no Document Responder
    broken["entity"][2]["role"]["code"] = "3"
    assert check(broken, load_profile(RESPONDER)) == [
        "AuditEvent.agent: 2 found, cardinality 3..*",
        "AuditEvent.agent:documentResponder: 0 found, cardinality 1..1",
        'AuditEvent.entity:documentReference.role: {"system": "http://terminology.hl7.org/CodeSystem/object-role", '
        '"code": "3", "display": "Job"} does not match patternCoding {"system": '
        '"http://terminology.hl7.org/CodeSystem/object-role", "code": "20", "display": "Job"}']


def test_the_igs_update_request_is_accepted_and_changes_nothing_it_does_not_change(gateway, provided):
    entry_id, update = provided
    response = gateway.provide(update)
    assert response.status_code == 200, response.text
    assert [e["response"]["location"].split("/fhir/")[1] for e in response.json()["entry"]] == [
        f"DocumentReference/{entry_id}/_history/1"]
    assert [e["outcome"] for e in mhd1_events(gateway)] == ["0"]


def test_every_update_and_deletion_record_follows_the_responder_profile(gateway, provided):
    entry_id, update = provided
    update["entry"][0]["resource"]["description"] = "Changed description"
    assert gateway.provide(update).status_code == 200
    deletion = copy.deepcopy(update)
    deletion["entry"][0]["resource"]["extension"].append({"url": EXT_DELETION, "valueCoding": {
        "system": "urn:oid:2.16.756.5.30.1.127.3.10.18", "code": "urn:e-health-suisse:2019:deletionStatus:deletionRequested"}})
    dadm = gateway.tokens.headers(gateway.tokens.mint(role="DADM", user_id="dadm-1", name="Document administrator"))
    assert gateway.provide(deletion, headers=dadm).status_code == 200

    events = mhd1_events(gateway)
    assert [e["subtype"][0]["code"] for e in events] == ["ATC_DOC_UPDATE", "ATC_DOC_DELETE"]
    for event in events:
        AuditEvent.model_validate(event)
        assert check(event, load_profile(RESPONDER)) == []
        responder = next(a for a in event["agent"] if a["type"]["coding"][0]["code"] == "110152")
        assert responder["who"] == event["source"]["observer"]  # val-audit-source
        assert responder["network"] == {"address": "https://testserver", "type": "5"}
        document = next(e for e in event["entity"] if e["role"]["code"] == "20")
        assert document["what"]["reference"] == f"https://testserver/fhir/DocumentReference/{entry_id}"


def test_the_patients_trail_shows_the_update_and_the_deletion_as_before(gateway, provided):
    entry_id, update = provided
    update["entry"][0]["resource"]["description"] = "Changed description"
    gateway.provide(update)
    spid = update["entry"][0]["resource"]["subject"]["identifier"]["value"]
    trail = gateway.client.get("/fhir/AuditEvent", params={"entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{spid}"},
                               headers=gateway.tokens.headers(gateway.tokens.patient(spid))).json()
    [shown] = [e["resource"] for e in trail["entry"] if e["resource"]["subtype"][0]["code"] == "ATC_DOC_UPDATE"]
    assert shown["meta"]["profile"] == ["http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/DocumentAuditEvent"]
    assert [(e["role"]["code"], "reference" in e["what"]) for e in shown["entity"] if e["type"]["code"] == "2"] == [
        ("3", False)]
    assert shown["action"] == "U"
