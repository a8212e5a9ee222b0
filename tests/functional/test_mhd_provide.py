"""ITI-65 over HTTP: accepted bundles, idempotent resubmission, conflicts, replacement."""

import base64
import hashlib

import orjson
from fhir.resources.R4B.bundle import Bundle

from conftest import SPID
from functional.helpers import document_ids, one_document_bundle, row_counts
from gateway.samples import pdf_document, provide_bundle

RECORD_TABLES = ("patient", "patient_identifier", "submission_set", "document_entry", "document_token",
                 "document_relation", "document_body")


def test_provide_answers_a_transaction_response_with_a_location_per_entry(gateway):
    gateway.register_patient()
    bundle = provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["one"])},
        {"title": "Lab", "content": pdf_document("Lab", ["two"])},
    ])

    response = gateway.provide(bundle)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    answer = Bundle.model_validate(response.json())
    assert answer.type == "transaction-response"
    statuses = [e.response.status for e in answer.entry]
    kinds = [e.response.location.split("/fhir/")[1].split("/")[0] for e in answer.entry]
    assert statuses == ["201 Created"] * 5
    assert kinds == ["List", "DocumentReference", "Binary", "DocumentReference", "Binary"]
    # each Binary location is the body of the DocumentReference before it
    ids = [e.response.location.rsplit("/", 1)[1] for e in answer.entry]
    assert ids[1] == ids[2] and ids[3] == ids[4] and ids[1] != ids[3]
    # per document: category, type, setting, facility, format, security-label, author.family, author.given
    counts = row_counts(gateway.runtime)
    assert {table: counts[table] for table in RECORD_TABLES} == {
        "patient": 1, "patient_identifier": 1, "submission_set": 1, "document_entry": 2,
        "document_token": 2 * 8, "document_relation": 0, "document_body": 2}


def test_same_unique_id_and_bytes_again_is_success_without_a_second_copy(gateway):
    gateway.register_patient()
    bundle = one_document_bundle()
    first = gateway.provide(bundle)
    counts = row_counts(gateway.runtime)

    again = gateway.provide(bundle)

    assert again.status_code == 200
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK"] * 3
    assert document_ids(again.json()) == document_ids(first.json())
    assert row_counts(gateway.runtime) == counts


def test_same_unique_id_with_other_bytes_is_a_conflict_and_stores_nothing(gateway):
    gateway.register_patient()
    first = one_document_bundle(unique_id="urn:oid:2.25.4242")
    gateway.provide(first)
    counts = row_counts(gateway.runtime)
    changed = one_document_bundle(unique_id="urn:oid:2.25.4242", content=pdf_document("Other", ["changed"]))

    response = gateway.provide(changed)

    assert response.status_code == 409
    issue = response.json()["issue"][0]
    assert issue["code"] == "conflict"
    assert "urn:oid:2.25.4242" in issue["diagnostics"]
    assert row_counts(gateway.runtime) == counts


def test_relates_to_replaces_supersedes_the_old_entry(gateway):
    gateway.register_patient()
    old_id = document_ids(gateway.provide(one_document_bundle(title="v1")).json())[0]

    response = gateway.provide(one_document_bundle(title="v2", replaces=old_id))

    assert response.status_code == 200, response.text
    new_id = document_ids(response.json())[0]
    old = gateway.client.get(f"/fhir/DocumentReference/{old_id}", headers=gateway.as_hcp()).json()
    new = gateway.client.get(f"/fhir/DocumentReference/{new_id}", headers=gateway.as_hcp()).json()
    assert old["status"] == "superseded"
    assert new["status"] == "current"
    assert new["relatesTo"] == [{"code": "replaces", "target": {"reference": f"DocumentReference/{old_id}"}}]
    current = gateway.find(status="current").json()
    assert [e["resource"]["id"] for e in current["entry"]] == [new_id]


def test_replacing_a_superseded_document_is_a_conflict(gateway):
    gateway.register_patient()
    old_id = document_ids(gateway.provide(one_document_bundle(title="v1")).json())[0]
    gateway.provide(one_document_bundle(title="v2", replaces=old_id))
    counts = row_counts(gateway.runtime)

    response = gateway.provide(one_document_bundle(title="v3", replaces=old_id))

    assert response.status_code == 409
    assert "superseded" in response.json()["issue"][0]["diagnostics"]
    assert row_counts(gateway.runtime) == counts


def test_unknown_spid_is_refused_with_the_ch_reconciliation_error(gateway):
    response = gateway.provide(one_document_bundle(spid="761337610400000001"))

    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["code"] == "processing"
    assert issue["details"] == {"text": "XDSPatientIDReconciliationError"}
    assert row_counts(gateway.runtime)["document_entry"] == 0


def test_hash_and_size_in_the_answer_describe_the_stored_bytes(gateway):
    gateway.register_patient()
    content = pdf_document("Report", ["hash me"])
    entry_id = document_ids(gateway.provide(one_document_bundle(content=content)).json())[0]

    resource = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=gateway.as_hcp()).json()

    attachment = resource["content"][0]["attachment"]
    assert attachment["size"] == len(content)
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(content).digest()).decode()
    assert attachment["url"] == f"https://testserver/fhir/Binary/{entry_id}"
    assert orjson.loads(orjson.dumps(resource))["subject"]["identifier"]["value"] == SPID
