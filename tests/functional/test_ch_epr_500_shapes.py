"""Shapes of CH EPR FHIR 5.0.0 beyond the shared examples: Bundles name their profiles, ITI-67 entries
always carry the entryUUID, a 4.0.1 `subject.reference` is told what to send, and the patient's trail
names the represented patient beside a representative (as the IG's ITI-81 sample does)."""

import orjson
from fhir.resources.R4B.bundle import Bundle

from conftest import SPID
from functional.test_consent_http import representative_consent
from functional.helpers import document_ids, one_document_bundle, row_counts

PROFILE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/"
TRAIL = {"entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"}


def test_provide_and_find_answers_name_their_profiles_and_every_entry_has_its_entry_uuid(gateway):
    gateway.register_patient()
    bundle = one_document_bundle()
    document = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    document.pop("identifier", None)  # the submitter sends no entryUUID

    provided = gateway.provide(bundle)
    found = gateway.find().json()

    assert provided.json()["meta"] == {"profile": [PROFILE + "ch-mhd-providedocumentbundle-comprehensive-response"]}
    assert found["meta"] == {"profile": [PROFILE + "ch-mhd-documentreference-comprehensive-bundle"]}
    Bundle.model_validate(found)
    [entry_id] = document_ids(provided.json())
    assert [e["resource"]["identifier"] for e in found["entry"]] == [
        [{"use": "official", "system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{entry_id}"}]]


def test_a_4_0_1_subject_reference_is_answered_with_what_to_send_instead(gateway):
    gateway.register_patient()
    bundle = one_document_bundle()
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "DocumentReference":
            entry["resource"]["subject"] = {"reference": "Patient/123"}
    before = row_counts(gateway.runtime)

    response = gateway.provide(bundle)

    assert response.status_code == 422
    [issue] = [i for i in response.json()["issue"] if "subject" in i["expression"][0]]
    assert issue["expression"] == ["Bundle.entry[1].resource.subject.reference"]
    assert "by subject.identifier" in issue["diagnostics"] and "4.0.1" in issue["diagnostics"]
    assert row_counts(gateway.runtime) == before


def test_the_trail_names_the_represented_patient_beside_the_representative_and_its_profile(gateway):
    gateway.register_patient()
    patient = gateway.tokens.headers(gateway.tokens.patient())
    consent = representative_consent("rep-4711")
    assert gateway.client.post("/fhir/Consent", content=orjson.dumps(consent), headers=patient).status_code == 201
    representative = gateway.tokens.headers(gateway.tokens.mint(role="REP", user_id="rep-4711", spid=SPID,
                                                                name="Paul Muster"))
    assert gateway.provide(one_document_bundle(author_role="REP"), headers=representative).status_code == 200

    trail = gateway.client.get("/fhir/AuditEvent", params=TRAIL, headers=patient).json()

    assert trail["meta"] == {"profile": [PROFILE + "CH-ATC.ITI-81.Response"]}
    [upload] = [e["resource"] for e in trail["entry"] if e["resource"]["subtype"][0]["code"] == "ATC_DOC_CREATE"]
    assert [(a["role"][0]["coding"][0]["code"], a.get("name"), a["requestor"]) for a in upload["agent"]] == [
        ("PAT", "Anna Muster", False), ("REP", "Paul Muster", True)]
    [stored] = [e for e in gateway.services.auditor.ledger.all_records() if e["id"] == upload["id"]]
    assert "Anna Muster" not in orjson.dumps(stored).decode()  # the clear ledger holds no names


def test_pixm_answers_the_ch_out_parameters_at_most_two_identifiers_and_no_target_id(gateway):
    from conftest import LOCAL_SYSTEM

    gateway.register_patient()
    systems = [LOCAL_SYSTEM, f"urn:oid:{gateway.runtime.settings.community_oid}"]
    source = ("sourceIdentifier", f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}")
    answer = gateway.client.get("/fhir/Patient/$ihe-pix", headers=gateway.as_hcp(),
                                params=[source, *[("targetSystem", s) for s in systems]]).json()
    assert answer["meta"] == {"profile": [PROFILE + "ch-pixm-out-parameters"]}
    assert [(p["name"], p["valueIdentifier"]["system"]) for p in answer["parameter"]] == [
        ("targetIdentifier", systems[0]), ("targetIdentifier", systems[1])]
    three = gateway.client.get("/fhir/Patient/$ihe-pix", headers=gateway.as_hcp(),
                               params=[source, *[("targetSystem", s) for s in [*systems, "urn:oid:2.999.1"]]])
    assert (three.status_code, three.json()["issue"][0]["diagnostics"]) == (
        400, "CH PIXm takes one or two targetSystem values")
