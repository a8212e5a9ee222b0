"""ITI-67 searches and ITI-68 retrieval over HTTP."""

import hashlib

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference
from sqlalchemy import update

from adapters.cara.store.schema import document_body
from conftest import OTHER_SPID, SPID
from functional.helpers import document_ids
from gateway.samples import pdf_document, provide_bundle


@pytest.fixture
def three_documents(gateway):
    gateway.register_patient()
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul")
    documents = [
        {"title": "Discharge", "type_code": "373942005", "date": "2026-01-10T08:00:00+01:00",
         "author_family": "Favre", "content": pdf_document("Discharge", ["a"])},
        {"title": "Lab", "type_code": "4241000179101", "date": "2026-03-05T08:00:00+01:00",
         "author_family": "Rossier", "confidentiality": "restricted", "content": pdf_document("Lab", ["b"])},
        {"title": "Operation", "type_code": "371526002", "date": "2026-06-20T08:00:00+02:00",
         "author_family": "Favre", "author_given": "Marie", "content": pdf_document("Operation", ["c"])},
    ]
    ids = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=documents)).json())
    gateway.provide(provide_bundle(spid=OTHER_SPID, documents=[{"title": "Not yours", "content": b"%PDF-1.4 other"}]))
    return dict(zip(["discharge", "lab", "operation"], ids))


def found(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


@pytest.mark.parametrize("params, expected", [
    ({}, {"discharge", "lab", "operation"}),
    ({"status": "current"}, {"discharge", "lab", "operation"}),
    ({"status": "superseded"}, set()),
    ({"type": "http://snomed.info/sct|4241000179101"}, {"lab"}),
    ({"type": "4241000179101,371526002"}, {"lab", "operation"}),
    ({"type": "http://loinc.org|4241000179101"}, set()),
    ({"category": "http://snomed.info/sct|371531000"}, {"discharge", "lab", "operation"}),
    ({"setting": "394802001"}, {"discharge", "lab", "operation"}),
    ({"facility": "http://snomed.info/sct|22232009"}, {"discharge", "lab", "operation"}),
    ({"format": "urn:oid:2.16.756.5.30.1.127.3.10.10|urn:che:epr:EPR_Unstructured_Document"},
     {"discharge", "lab", "operation"}),
    ({"security-label": "263856008"}, {"lab"}),
    ({"date": "ge2026-03-01"}, {"lab", "operation"}),
    ({"date": "lt2026-03-05"}, {"discharge"}),
    ({"date": "2026-03"}, {"lab"}),
    ({"author.family": "favre"}, {"discharge", "operation"}),
    ({"author.family": "FAVRE", "author.given": "Marie"}, {"operation"}),
    ({"author.family": "Fav"}, set()),  # exact match on keyed hashes (see docs/design-notes.md)
])
def test_find_filters_by_each_mhd_parameter(gateway, three_documents, params, expected):
    response = gateway.find(**params)

    assert found(response) == {three_documents[name] for name in expected}
    assert response.json()["total"] == len(expected)


def test_find_answer_is_a_valid_r4_searchset_of_ch_documentreferences(gateway, three_documents):
    bundle = gateway.find().json()

    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "searchset"
    for entry in bundle["entry"]:
        DocumentReference.model_validate(entry["resource"])
        assert entry["resource"]["subject"]["identifier"]["value"] == SPID
        assert entry["fullUrl"] == f"https://testserver/fhir/DocumentReference/{entry['resource']['id']}"


def test_paging_walks_every_entry_once_with_next_links(gateway, three_documents):
    seen, pages = [], 0
    response = gateway.find(_count="2")
    while True:
        pages += 1
        bundle = response.json()
        assert bundle["total"] == 3
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        response = gateway.client.get(following[0], headers=gateway.as_hcp())
    assert pages == 2
    assert sorted(seen) == sorted(three_documents.values())


def test_unknown_patient_finds_an_empty_searchset(gateway, three_documents):
    response = gateway.find(spid="761337610400000001")

    assert response.status_code == 200
    assert response.json()["total"] == 0
    assert "entry" not in response.json()  # FHIR JSON has no empty arrays


def test_retrieve_returns_the_original_bytes_with_their_content_type(gateway):
    gateway.register_patient()
    content = pdf_document("Original", ["byte for byte"])
    entry_id = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Original", "content": content}])).json())[0]
    url = gateway.find().json()["entry"][0]["resource"]["content"][0]["attachment"]["url"]

    response = gateway.client.get(url, headers=gateway.as_hcp())

    assert url.endswith(f"/Binary/{entry_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.content == content


def test_retrieve_of_an_unknown_document_is_a_404(gateway):
    response = gateway.client.get("/fhir/Binary/does-not-exist", headers=gateway.as_hcp())

    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


def test_a_body_moved_onto_another_entry_is_never_served(gateway):
    gateway.register_patient()
    ids = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "A", "content": pdf_document("A", ["first"])},
        {"title": "B", "content": pdf_document("B", ["second"])}])).json())
    with gateway.runtime.engine.begin() as connection:
        stolen = connection.execute(document_body.select().where(document_body.c.entry_id == ids[1])).one()
        connection.execute(update(document_body).where(document_body.c.entry_id == ids[0])
                           .values(sealed_key=stolen.sealed_key, sealed=stolen.sealed))

    response = gateway.client.get(f"/fhir/Binary/{ids[0]}", headers=gateway.as_hcp())

    assert response.status_code == 500
    assert response.json()["issue"][0]["diagnostics"] == (
        "the document could not be served: its stored form failed an integrity check")
    assert hashlib.sha1(response.content).hexdigest() != hashlib.sha1(b"second").hexdigest()


# -- remembered search pages (EPR_SEARCH_CACHE_SECONDS, on by default) -----------------------------
def test_a_document_provided_after_a_search_is_found_by_the_same_search_at_once(gateway, three_documents):
    before = gateway.find(_count="10")
    assert before.json()["total"] == 3
    added = document_ids(gateway.provide(provide_bundle(
        spid=SPID, documents=[{"title": "Later", "content": pdf_document("Later", ["d"])}])).json())

    after = gateway.find(_count="10")
    assert after.json()["total"] == 4
    assert found(after) == found(before) | set(added)


def test_a_revoked_grant_is_never_answered_from_a_remembered_page(gateway, three_documents):
    consent_id = gateway.grant(SPID, "7601000000019", "restricted")
    colleague = gateway.tokens.headers(gateway.tokens.hcp(gln="7601000000019"))
    assert len(found(gateway.find(headers=colleague))) == 3

    revoked = gateway.client.delete(f"/fhir/Consent/{consent_id}",
                                    headers=gateway.tokens.headers(gateway.tokens.patient(SPID)))
    assert revoked.status_code == 204, revoked.text

    answer = gateway.find(headers=colleague)
    assert answer.json()["total"] == 0 and found(answer) == set()


def test_a_page_seen_by_a_restricted_grant_is_not_shown_to_a_normal_one(gateway, three_documents):
    assert found(gateway.find()) == set(three_documents.values())  # the test HCP: restricted
    gateway.grant(SPID, "7601000000019", "normal")
    colleague = gateway.tokens.headers(gateway.tokens.hcp(gln="7601000000019"))
    assert found(gateway.find(headers=colleague)) == {three_documents["discharge"], three_documents["operation"]}
