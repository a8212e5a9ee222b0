"""FHIR versioning over HTTP (issue 13): meta.versionId/lastUpdated, ETag and Last-Modified, If-Match
(412 and nothing changed: no lost update on Consent PUT and on the CH:MHD-1 update), If-None-Match
(304), Location with _history, vread, Prefer: return=…, DELETE twice (204) and read of a deleted
Consent (410); and ITI-68 answered as a FHIR Binary when FHIR JSON is asked. Every JSON answer is
validated with the R4B models."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from email.utils import parsedate_to_datetime

import orjson
import pytest
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient

from conftest import HCP_GLN, LOCAL_SYSTEM, OTHER_SPID, SPID, grant_consent
from functional.helpers import document_ids, row_counts
from functional.test_audit_exchanges import ledger
from gateway.samples import patient_feed, pdf_document, provide_bundle

BASE = "https://testserver/fhir"
RESTRICTED = "urn:e-health-suisse:2015:policies:access-level:restricted"
NORMAL = "urn:e-health-suisse:2015:policies:access-level:normal"


def validated(response, model):
    model.model_validate(response.json())
    return response.json()


def outcome(response) -> tuple[int, str]:
    body = validated(response, OperationOutcome)
    return response.status_code, body["issue"][0]["code"]


def patient_headers(gateway, spid: str = SPID) -> dict[str, str]:
    return gateway.tokens.headers(gateway.tokens.patient(spid))


def successes(gateway, transaction: str) -> int:
    return sum(1 for record in ledger(gateway) if record[0] == transaction and record[2] == "0")


def create_consent(gateway, headers, **prefer) -> tuple[dict, dict]:
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal")
    response = gateway.client.post("/fhir/Consent", content=orjson.dumps(consent), headers={**headers, **prefer})
    assert response.status_code == 201, response.text
    return consent, response


def consent_id(consent: dict) -> str:
    return next(x["value"] for x in consent["identifier"]
                if x["type"]["coding"][0]["code"] == "policySetId").removeprefix("urn:uuid:")


# -- Consent ------------------------------------------------------------------------------------------
def test_a_consent_update_with_a_stale_if_match_is_412_and_changes_nothing(gateway):
    gateway.register_patient()
    patient = patient_headers(gateway)
    consent, created = create_consent(gateway, patient)
    cid = consent_id(consent)
    body = validated(created, Consent)
    assert (body["meta"]["versionId"], created.headers["etag"]) == ("1", 'W/"1"')
    assert created.headers["location"] == f"{BASE}/Consent/{cid}/_history/1"
    assert parsedate_to_datetime(created.headers["last-modified"]).timestamp() == pytest.approx(
        datetime.fromisoformat(body["meta"]["lastUpdated"]).timestamp(), abs=1)

    consent["policyRule"]["coding"][0]["code"] = RESTRICTED
    updated = gateway.client.put(f"/fhir/Consent/{cid}", content=orjson.dumps(consent),
                                 headers={**patient, "If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert (validated(updated, Consent)["meta"]["versionId"], updated.headers["etag"]) == ("2", 'W/"2"')
    assert updated.headers["location"] == f"{BASE}/Consent/{cid}/_history/2"

    # A second writer who read version 1 must not overwrite version 2.
    before, recorded = row_counts(gateway.runtime), successes(gateway, "PPQ-3")
    consent["policyRule"]["coding"][0]["code"] = NORMAL
    stale = gateway.client.put(f"/fhir/Consent/{cid}", content=orjson.dumps(consent),
                               headers={**patient, "If-Match": 'W/"1"'})
    assert outcome(stale) == (412, "conflict")
    assert row_counts(gateway.runtime) == before
    assert successes(gateway, "PPQ-3") == recorded  # no change audited as made
    now = gateway.client.get(f"/fhir/Consent/{cid}", headers=patient)
    assert (validated(now, Consent)["meta"]["versionId"], now.json()["policyRule"]["coding"][0]["code"]) == (
        "2", RESTRICTED)
    # The same at the IG's conditional URL, and for a DELETE.
    conditional = gateway.client.put(f"/fhir/Consent?identifier=urn:uuid:{cid}", content=orjson.dumps(consent),
                                     headers={**patient, "If-Match": 'W/"1"'})
    assert outcome(conditional) == (412, "conflict")
    assert outcome(gateway.client.delete(f"/fhir/Consent/{cid}", headers={**patient, "If-Match": 'W/"1"'})) == (
        412, "conflict")
    assert row_counts(gateway.runtime) == before
    malformed = gateway.client.put(f"/fhir/Consent/{cid}", content=orjson.dumps(consent),
                                   headers={**patient, "If-Match": "version one"})
    assert outcome(malformed) == (400, "invalid")
    # Without If-Match the update is unconditional, as before.
    assert gateway.client.put(f"/fhir/Consent/{cid}", content=orjson.dumps(consent), headers=patient).headers[
        "etag"] == 'W/"3"'


def test_a_consent_read_answers_304_to_its_version_and_vread_serves_the_current_one(sqlite_gateway):
    gateway = sqlite_gateway
    gateway.register_patient()
    patient = patient_headers(gateway)
    consent, _ = create_consent(gateway, patient)
    cid = consent_id(consent)
    reads_before = successes(gateway, "PPQ-5")

    read = gateway.client.get(f"/fhir/Consent/{cid}", headers=patient)
    assert (read.status_code, read.headers["etag"]) == (200, 'W/"1"')
    assert validated(read, Consent)["id"] == cid and "last-modified" in read.headers
    cached = gateway.client.get(f"/fhir/Consent/{cid}", headers={**patient, "If-None-Match": 'W/"1"'})
    assert (cached.status_code, cached.content, cached.headers["etag"]) == (304, b"", 'W/"1"')
    other = gateway.client.get(f"/fhir/Consent/{cid}", headers={**patient, "If-None-Match": 'W/"7"'})
    assert other.status_code == 200
    vread = gateway.client.get(f"/fhir/Consent/{cid}/_history/1", headers=patient)
    assert validated(vread, Consent) == read.json()
    assert outcome(gateway.client.get(f"/fhir/Consent/{cid}/_history/2", headers=patient)) == (404, "not-found")
    assert outcome(gateway.client.get(f"/fhir/Consent/{cid}/_history/x1", headers=patient)) == (404, "not-found")
    assert successes(gateway, "PPQ-5") == reads_before + 4  # the 304 too is a read, decided and recorded

    # Read under the same rule as PPQ-5: another patient may not read this one's policies.
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul", grant_hcp=None)
    assert gateway.client.get(f"/fhir/Consent/{cid}", headers=patient_headers(gateway, OTHER_SPID)).status_code == 403
    assert outcome(gateway.client.get(f"/fhir/Consent/{uuid.uuid4()}", headers=patient)) == (404, "not-found")
    # PPQ-5 searches carry the version too.
    found = gateway.client.get("/fhir/Consent", params={"identifier": f"urn:uuid:{cid}"}, headers=patient).json()
    assert found["entry"][0]["resource"]["meta"]["versionId"] == "1"


def test_a_deleted_consent_reads_410_and_deleting_it_again_is_204(sqlite_gateway):
    gateway = sqlite_gateway
    gateway.register_patient()
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul", grant_hcp=None)
    patient = patient_headers(gateway)
    consent, _ = create_consent(gateway, patient)
    cid = consent_id(consent)

    assert gateway.client.delete(f"/fhir/Consent/{cid}", headers={**patient, "If-Match": 'W/"1"'}).status_code == 204
    assert outcome(gateway.client.get(f"/fhir/Consent/{cid}", headers=patient)) == (410, "deleted")
    assert outcome(gateway.client.get(f"/fhir/Consent/{cid}/_history/1", headers=patient)) == (410, "deleted")
    before, deletions = row_counts(gateway.runtime), successes(gateway, "PPQ-3")
    again = gateway.client.delete(f"/fhir/Consent/{cid}", headers=patient)
    assert (again.status_code, again.content) == (204, b"")
    assert row_counts(gateway.runtime) == before
    assert successes(gateway, "PPQ-3") == deletions + 1  # the request is recorded; nothing was changed
    # To anyone who could not manage these policies, a deleted id is as unknown as a never-stored one.
    other = patient_headers(gateway, OTHER_SPID)
    assert outcome(gateway.client.get(f"/fhir/Consent/{cid}", headers=other)) == (404, "not-found")
    assert outcome(gateway.client.delete(f"/fhir/Consent/{cid}", headers=other)) == (404, "not-found")
    assert outcome(gateway.client.delete(f"/fhir/Consent/{uuid.uuid4()}", headers=patient)) == (404, "not-found")
    assert row_counts(gateway.runtime) == before
    # Created again under the same id, it continues its versions (1 created, 2 deleted, 3 now).
    again = gateway.client.put(f"/fhir/Consent/{cid}", content=orjson.dumps(consent), headers=patient)
    assert (again.status_code, validated(again, Consent)["meta"]["versionId"]) == (201, "3")
    assert again.headers["location"].endswith(f"/Consent/{cid}/_history/3")


@pytest.mark.parametrize("prefer", ["minimal", "representation", "OperationOutcome", None])
def test_prefer_return_is_honoured_on_create_and_update(sqlite_gateway, prefer):
    gateway = sqlite_gateway
    gateway.register_patient()
    patient = patient_headers(gateway)
    asked = {"Prefer": f"return={prefer}"} if prefer else {}
    consent, created = create_consent(gateway, patient, **asked)
    cid = consent_id(consent)
    consent["policyRule"]["coding"][0]["code"] = RESTRICTED
    updated = gateway.client.put(f"/fhir/Consent/{cid}", content=orjson.dumps(consent), headers={**patient, **asked})

    for response, status, version in ((created, 201, "1"), (updated, 200, "2")):
        assert response.status_code == status
        assert response.headers["etag"] == f'W/"{version}"'
        assert response.headers["location"] == f"{BASE}/Consent/{cid}/_history/{version}"
        if prefer == "minimal":
            assert response.content == b""
        elif prefer == "OperationOutcome":
            body = validated(response, OperationOutcome)
            assert body["issue"][0]["severity"] == "information"
            assert f"Consent/{cid} stored as version {version}" in body["issue"][0]["diagnostics"]
        else:
            assert validated(response, Consent)["meta"]["versionId"] == version
    # Whatever the answer's shape, the update was stored.
    stored = gateway.client.get(f"/fhir/Consent/{cid}", headers=patient).json()
    assert stored["policyRule"]["coding"][0]["code"] == RESTRICTED


# -- DocumentReference (CH:MHD-1) ----------------------------------------------------------------------
@pytest.fixture
def letter(gateway) -> str:
    gateway.register_patient(grant_hcp="restricted")
    bundle = provide_bundle(spid=SPID, documents=[{"title": "Letter", "type_code": "373942005",
                                                   "content": pdf_document("Letter", ["a"])}])
    return document_ids(gateway.provide(bundle).json())[0]


def test_an_mhd1_update_with_a_stale_if_match_is_412_and_changes_nothing(gateway, letter):
    hcp = gateway.as_hcp()
    read = gateway.client.get(f"/fhir/DocumentReference/{letter}", headers=hcp)
    first = validated(read, DocumentReference)
    assert (first["meta"]["versionId"], read.headers["etag"]) == ("1", 'W/"1"')
    assert "lastUpdated" in first["meta"] and "last-modified" in read.headers

    first["description"] = "Corrected letter"
    updated = gateway.client.put(f"/fhir/DocumentReference/{letter}", content=orjson.dumps(first),
                                 headers={**hcp, "If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert (validated(updated, DocumentReference)["meta"]["versionId"], updated.headers["etag"]) == ("2", 'W/"2"')
    assert updated.headers["location"] == f"{BASE}/DocumentReference/{letter}/_history/2"

    before = row_counts(gateway.runtime)
    first["description"] = "A lost update"
    stale = gateway.client.put(f"/fhir/DocumentReference/{letter}", content=orjson.dumps(first),
                               headers={**hcp, "If-Match": 'W/"1"'})
    assert outcome(stale) == (412, "conflict")
    assert row_counts(gateway.runtime) == before
    assert [v.description for v in gateway.services.metadata.versions.history(letter)] == [None, "Corrected letter"]
    assert gateway.client.get(f"/fhir/DocumentReference/{letter}", headers=hcp).json() == updated.json()


def test_a_document_reference_is_read_by_version_and_answers_304(sqlite_gateway):
    gateway = sqlite_gateway
    gateway.register_patient(grant_hcp="restricted")
    letter = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "type_code": "373942005", "content": pdf_document("Letter", ["a"])}])).json())[0]
    hcp = gateway.as_hcp()
    first = gateway.client.get(f"/fhir/DocumentReference/{letter}", headers=hcp).json()
    changed = {**first, "description": "Corrected letter"}
    assert gateway.client.put(f"/fhir/DocumentReference/{letter}", content=orjson.dumps(changed),
                              headers=hcp).status_code == 200
    reads_before = len([r for r in ledger(gateway) if r[:3] == ("ITI-67", "ATC_DOC_SEARCH", "0")])

    old = gateway.client.get(f"/fhir/DocumentReference/{letter}/_history/1", headers=hcp)
    assert (old.status_code, old.headers["etag"]) == (200, 'W/"1"')
    assert validated(old, DocumentReference)["meta"]["versionId"] == "1" and "description" not in old.json()
    assert old.json()["meta"]["lastUpdated"] == first["meta"]["lastUpdated"]
    current = gateway.client.get(f"/fhir/DocumentReference/{letter}/_history/2", headers=hcp)
    assert validated(current, DocumentReference)["description"] == "Corrected letter"
    assert current.json() == gateway.client.get(f"/fhir/DocumentReference/{letter}", headers=hcp).json()
    assert outcome(gateway.client.get(f"/fhir/DocumentReference/{letter}/_history/3", headers=hcp)) == (
        404, "not-found")
    unchanged = gateway.client.get(f"/fhir/DocumentReference/{letter}", headers={**hcp, "If-None-Match": 'W/"2"'})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert gateway.client.get(f"/fhir/DocumentReference/{letter}",
                              headers={**hcp, "If-None-Match": 'W/"1"'}).status_code == 200
    # Every read (the 304 and the vreads included) is decided and recorded as the plain read is.
    assert len([r for r in ledger(gateway) if r[:3] == ("ITI-67", "ATC_DOC_SEARCH", "0")]) == reads_before + 5
    # Another patient's token reads no version of this document.
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul", grant_hcp=None)
    other = patient_headers(gateway, OTHER_SPID)
    assert outcome(gateway.client.get(f"/fhir/DocumentReference/{letter}/_history/1", headers=other)) == (
        404, "not-found")


def test_an_old_version_is_decided_under_its_own_confidentiality(sqlite_gateway):
    """A document provided restricted and relabelled normal by the patient: an HCP granted normal
    access reads version 2, never version 1 (it was restricted when it was that version)."""
    gateway = sqlite_gateway
    gateway.register_patient(grant_hcp="restricted")
    letter = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["a"]), "confidentiality": "restricted"}])).json())[0]
    patient = patient_headers(gateway)
    resource = gateway.client.get(f"/fhir/DocumentReference/{letter}", headers=patient).json()
    resource["securityLabel"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "17621005",
                                              "display": "Normally accessible"}]}]
    relabelled = gateway.client.put(f"/fhir/DocumentReference/{letter}", content=orjson.dumps(resource),
                                    headers=patient)
    assert (relabelled.status_code, relabelled.json()["meta"]["versionId"]) == (200, "2"), relabelled.text
    other_gln = "7601000000019"
    gateway.grant(SPID, other_gln, "normal")
    normal_hcp = gateway.tokens.headers(gateway.tokens.hcp(gln=other_gln))

    assert gateway.client.get(f"/fhir/DocumentReference/{letter}", headers=normal_hcp).status_code == 200
    assert outcome(gateway.client.get(f"/fhir/DocumentReference/{letter}/_history/1", headers=normal_hcp)) == (
        404, "not-found")
    assert gateway.client.get(f"/fhir/DocumentReference/{letter}/_history/1", headers=patient).status_code == 200


# -- Patient -----------------------------------------------------------------------------------------
def test_a_patient_carries_its_version_from_the_identity_feed(sqlite_gateway):
    gateway = sqlite_gateway
    fed = gateway.register_patient(grant_hcp=None)
    assert fed["meta"]["versionId"] == "1"
    hcp = gateway.as_hcp()
    read = gateway.client.get(f"/fhir/Patient/{fed['id']}", headers=hcp)
    assert read.status_code == 200, read.text
    assert (validated(read, Patient)["meta"]["versionId"], read.headers["etag"]) == ("1", 'W/"1"')
    assert "last-modified" in read.headers
    assert (gateway.client.get(f"/fhir/Patient/{fed['id']}", headers={**hcp, "If-None-Match": 'W/"1"'})
            .status_code) == 304
    # A second feed of the same patient is an update: version 2, from the feed's answer on.
    refed = gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-1", headers=hcp, content=orjson.dumps(
        patient_feed(spid=SPID, local_system=LOCAL_SYSTEM, local_id="L-1", family="Muster", given="Anna",
                     birth_date="1980-05-17", gender="female")))
    assert (refed.status_code, validated(refed, Patient)["meta"]["versionId"]) == (200, "2"), refed.text
    assert refed.headers["etag"] == 'W/"2"' and refed.headers["location"].endswith(f"/Patient/{fed['id']}/_history/2")
    assert gateway.client.get(f"/fhir/Patient/{fed['id']}", headers=hcp).headers["etag"] == 'W/"2"'


# -- ITI-68 as a resource ----------------------------------------------------------------------------
@pytest.mark.parametrize("asked", [{"headers": {"Accept": "application/fhir+json"}}, {"params": {"_format": "json"}}],
                         ids=["Accept", "_format"])
def test_binary_answers_a_fhir_binary_when_fhir_json_is_asked(sqlite_gateway, asked):
    gateway = sqlite_gateway
    gateway.register_patient(grant_hcp="restricted")
    content = pdf_document("Letter", ["a"])
    letter = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": content}])).json())[0]
    hcp = gateway.as_hcp()
    retrievals = len([r for r in ledger(gateway) if r[:3] == ("ITI-68", "ATC_DOC_READ", "0")])

    raw = gateway.client.get(f"/fhir/Binary/{letter}", headers=hcp)
    assert (raw.status_code, raw.headers["content-type"], raw.content) == (200, "application/pdf", content)
    resource = gateway.client.get(f"/fhir/Binary/{letter}", headers={**hcp, **asked.get("headers", {})},
                                  params=asked.get("params"))
    assert resource.headers["content-type"].startswith("application/fhir+json")
    binary = validated(resource, Binary)
    assert (binary["id"], binary["contentType"], binary["securityContext"]) == (
        letter, "application/pdf", {"reference": f"DocumentReference/{letter}"})
    assert base64.b64decode(binary["data"]) == content
    assert resource.headers["cache-control"] == "no-store"
    assert len([r for r in ledger(gateway) if r[:3] == ("ITI-68", "ATC_DOC_READ", "0")]) == retrievals + 2
    # The same consent: another patient's token gets the 404 of an unknown document, as for the bytes.
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul", grant_hcp=None)
    other = {**patient_headers(gateway, OTHER_SPID), **asked.get("headers", {})}
    assert outcome(gateway.client.get(f"/fhir/Binary/{letter}", headers=other, params=asked.get("params"))) == (
        404, "not-found")


# -- CapabilityStatement -----------------------------------------------------------------------------
def test_the_statement_declares_versioning_conditional_reads_and_vread(sqlite_gateway):
    statement = sqlite_gateway.client.get("/fhir/metadata").json()
    CapabilityStatement.model_validate(statement)
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for kind in ("Consent", "DocumentReference"):
        assert {i["code"] for i in resources[kind]["interaction"]} >= {"read", "vread", "update"}
        assert (resources[kind]["versioning"], resources[kind]["conditionalRead"]) == ("versioned-update", "not-match")
    # Past versions: every metadata version of a DocumentReference is kept (vread serves them); a
    # policy set keeps only its current one.
    assert (resources["DocumentReference"]["readHistory"], resources["Consent"]["readHistory"]) == (True, False)
    assert (resources["Consent"]["updateCreate"], resources["DocumentReference"]["updateCreate"]) == (True, False)
    assert resources["Patient"]["versioning"] == "versioned"
    assert "vread" not in {i["code"] for i in resources["Patient"]["interaction"]}
    assert "versioning" not in resources["Binary"] and "versioning" not in resources["AuditEvent"]
