"""Client JSON (issue 10, items 7 and 9): a member named twice is a 400 wherever a client's JSON is
read, and metadata has a budget (size, members, depth, per resource) checked before it is parsed
whole, with the limits in settings; nothing is stored in either case."""

from __future__ import annotations

import orjson
import pytest

from conftest import LOCAL_SYSTEM, OTHER_SPID, SPID, grant_consent, running_gateway, sqlite_url
from gateway.samples import patient_feed, pdf_document
from helpers import one_document_bundle, row_counts


def _list_with_two_subjects(spid_first: str) -> bytes:
    """The List's `subject` twice, the first naming another patient: the text a reviewer reads
    says OTHER_SPID, a last-one-wins parser stores SPID."""
    text = orjson.dumps(one_document_bundle()).decode()
    subject = orjson.dumps({"identifier": {"system": "urn:oid:2.16.756.5.30.1.127.3.10.3", "value": SPID}}).decode()
    first = subject.replace(SPID, spid_first)
    assert text.count(f'"subject":{subject}') == 2  # the List's and the DocumentReference's
    return text.replace(f'"subject":{subject}', f'"subject":{first},"subject":{subject}', 1).encode()


@pytest.mark.parametrize("body, where", [
    (_list_with_two_subjects(OTHER_SPID), "Bundle.entry[0].resource.subject"),
    (_list_with_two_subjects(OTHER_SPID).replace(b'"subject"', b'"\\u0073ubject"', 1),
     "Bundle.entry[0].resource.subject"),
    (orjson.dumps(one_document_bundle()).replace(b'"resourceType":"Bundle"', b'"resourceType":"Bundle","type":"batch"'),
     "Bundle.type"),
], ids=["two-subjects", "escaped-twin", "bundle-type-twice"])
def test_iti65_refuses_a_duplicate_member_and_stores_nothing(sqlite_gateway, body, where):
    sqlite_gateway.register_patient()
    sqlite_gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Other")
    before = row_counts(sqlite_gateway.runtime)
    response = sqlite_gateway.client.post("/fhir", content=body, headers=sqlite_gateway.as_hcp())
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == [where]
    assert "twice" in response.json()["issue"][0]["diagnostics"]
    assert row_counts(sqlite_gateway.runtime) == before


def _twice(document: dict, member: str) -> bytes:
    text = orjson.dumps(document).decode()
    value = orjson.dumps(document[member]).decode()
    return text.replace(f'"{member}":{value}', f'"{member}":{value},"{member}":{value}', 1).encode()


def test_every_client_body_refuses_a_duplicate_member(sqlite_gateway):
    """PPQ-3 (Consent), ITI-104 (Patient), $merge (Parameters), PPQ-4 (Bundle of Consents)."""
    sqlite_gateway.register_patient()
    patient = sqlite_gateway.tokens.headers(sqlite_gateway.tokens.patient())
    padm = sqlite_gateway.tokens.headers(sqlite_gateway.tokens.mint(role="PADM", user_id="padm-1", name="Admin"))
    consent = grant_consent(spid=SPID, gln="7601000000019", level="normal")
    feed = patient_feed(spid=OTHER_SPID, local_system=LOCAL_SYSTEM, local_id="L-7", family="Doe", given="Jo",
                        birth_date="1990-01-01", gender="male")
    merge = {"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueIdentifier": {"system": LOCAL_SYSTEM, "value": "L-1"}},
        {"name": "target-patient", "valueIdentifier": {"system": LOCAL_SYSTEM, "value": "L-7"}}]}
    ppq4 = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": consent, "request": {"method": "POST", "url": "Consent"}}]}
    before = row_counts(sqlite_gateway.runtime)
    answers = [
        sqlite_gateway.client.post("/fhir/Consent", content=_twice(consent, "patient"), headers=patient),
        sqlite_gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-7", content=_twice(feed, "birthDate"),
                                  headers=sqlite_gateway.as_hcp()),
        sqlite_gateway.client.post("/fhir/Patient/$merge", content=_twice(merge, "parameter"), headers=padm),
        sqlite_gateway.client.post("/fhir", content=_twice(ppq4, "entry"), headers=patient),
    ]
    assert [(a.status_code, a.json()["resourceType"], a.json()["issue"][0]["expression"]) for a in answers] == [
        (400, "OperationOutcome", ["Consent.patient"]), (400, "OperationOutcome", ["Patient.birthDate"]),
        (400, "OperationOutcome", ["Parameters.parameter"]), (400, "OperationOutcome", ["Bundle.entry"])]
    assert row_counts(sqlite_gateway.runtime) == before


# -- the metadata budget (item 9) ------------------------------------------------------------------

def _document_with_extensions(count: int) -> bytes:
    bundle = one_document_bundle()
    doc = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    doc["extension"] += [{"url": "urn:example:filler", "valueString": "x"}] * count
    return orjson.dumps(bundle)


def test_200000_extensions_are_refused_with_413_before_validation(sqlite_gateway):
    sqlite_gateway.register_patient()
    before = row_counts(sqlite_gateway.runtime)
    response = sqlite_gateway.client.post("/fhir", content=_document_with_extensions(200_000),
                                          headers=sqlite_gateway.as_hcp())
    assert (response.status_code, response.json()["issue"][0]["code"]) == (413, "too-costly")
    assert "20000 members" in response.json()["issue"][0]["diagnostics"]
    assert row_counts(sqlite_gateway.runtime) == before
    assert sqlite_gateway.find().json()["total"] == 0


def test_one_oversized_resource_is_refused_with_its_fhirpath(sqlite_gateway):
    sqlite_gateway.register_patient()
    response = sqlite_gateway.client.post("/fhir", content=_document_with_extensions(3_000),
                                          headers=sqlite_gateway.as_hcp())
    assert response.status_code == 413, response.text
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource"]


def test_over_deep_json_is_refused_with_422(sqlite_gateway):
    sqlite_gateway.register_patient()
    bundle = one_document_bundle()
    doc = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    nested: dict = {"url": "urn:example:leaf", "valueString": "x"}
    for _ in range(40):
        nested = {"url": "urn:example:nest", "extension": [nested]}
    doc["extension"].append(nested)
    before = row_counts(sqlite_gateway.runtime)
    response = sqlite_gateway.provide(bundle)
    assert (response.status_code, response.json()["resourceType"]) == (422, "OperationOutcome")
    assert response.json()["issue"][0]["expression"][0].startswith("Bundle.entry[1].resource.extension[1].extension[0]")
    assert row_counts(sqlite_gateway.runtime) == before


def test_document_content_is_not_metadata(sqlite_gateway):
    """A 3 MB document passes a 1 MB metadata budget: Binary.data is bounded by the body limit."""
    sqlite_gateway.register_patient()
    content = pdf_document("Large", ["x" * 200] * 15_000)
    assert len(content) > 2_500_000
    response = sqlite_gateway.provide(one_document_bundle(title="Large", content=content))
    assert response.status_code == 200, response.text


def test_the_budget_comes_from_settings(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), max_metadata_bytes=8 * 1024) as gateway:
        gateway.register_patient()
        body = _document_with_extensions(200)  # ~12 KB of metadata: within the default, not within 8 KB
        response = gateway.client.post("/fhir", content=body, headers=gateway.as_hcp())
        assert (response.status_code, response.json()["issue"][0]["code"]) == (413, "too-costly")
        assert "8192 bytes" in response.json()["issue"][0]["diagnostics"]


def test_every_client_body_is_read_under_the_configured_budget(tmp_path):
    """Conditional PPQ-3, CH:MHD-1 and ITI-119 bodies too: ~12 KB of metadata against a budget of 8 KB."""
    filler = [{"url": "urn:example:filler", "valueString": "x"}] * 200
    with running_gateway(tmp_path, sqlite_url(tmp_path), max_metadata_bytes=8 * 1024) as gateway:
        gateway.register_patient()
        patient = gateway.tokens.headers(gateway.tokens.patient())
        consent = {**grant_consent(spid=SPID, gln="7601000000019", level="normal"), "extension": filler}
        document = {"resourceType": "DocumentReference", "status": "current", "extension": filler}
        match = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {
            "resourceType": "Patient", "extension": filler}}]}
        before = row_counts(gateway.runtime)
        answers = [
            gateway.client.put("/fhir/Consent?identifier=urn:ietf:rfc:3986|urn:uuid:6c9b7c4e-3c65-4c0e-9f2b-0a1b2c3d4e5f",
                               content=orjson.dumps(consent), headers=patient),
            gateway.client.put("/fhir/DocumentReference/unknown-entry", content=orjson.dumps(document),
                               headers=gateway.as_hcp()),
            gateway.client.post("/fhir/Patient/$match", content=orjson.dumps(match), headers=gateway.as_hcp()),
        ]
        assert [(a.status_code, a.json()["issue"][0]["code"], "8192 bytes" in a.json()["issue"][0]["diagnostics"])
                for a in answers] == [(413, "too-costly", True)] * 3
        assert row_counts(gateway.runtime) == before
