"""FHIR REST conventions over HTTP: _format and 406, HEAD, 405 with Allow, POST [type]/_search,
Prefer: handling=lenient, gzip, CORS for configured origins only. Every JSON answer is validated
with the R4B models."""

from __future__ import annotations

import gzip

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from conftest import SEARCH, SPID, running_gateway, sqlite_url
from functional.helpers import document_ids
from gateway.samples import pdf_document, provide_bundle

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def with_documents(sqlite_gateway):
    sqlite_gateway.register_patient()
    documents = [{"title": f"Letter {i}", "content": pdf_document(f"Letter {i}", [str(i)])} for i in range(3)]
    ids = document_ids(sqlite_gateway.provide(provide_bundle(spid=SPID, documents=documents)).json())
    return sqlite_gateway, ids


@pytest.mark.parametrize("value", ["json", "application/json", "application/fhir+json", "application/fhir+json;fhirVersion=4.0"])
def test_format_json_is_accepted_on_search_read_and_metadata(with_documents, value):
    gateway, ids = with_documents

    search = gateway.client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + SPID, "_format": value},
                                headers=gateway.as_hcp())
    read = gateway.client.get(f"/fhir/DocumentReference/{ids[0]}", params={"_format": value}, headers=gateway.as_hcp())
    metadata = gateway.client.get("/fhir/metadata", params={"_format": value})

    assert [search.status_code, read.status_code, metadata.status_code] == [200, 200, 200], search.text
    assert Bundle.model_validate(search.json()).total == 3
    assert read.json()["id"] == ids[0]
    assert metadata.json()["resourceType"] == "CapabilityStatement"


@pytest.mark.parametrize("params, accept", [
    ({"_format": "xml"}, None), ({"_format": "application/fhir+xml"}, None), ({"_format": "turtle"}, None),
    ({}, "application/fhir+xml"), ({}, "application/xml, text/xml;q=0.9"),
])
def test_xml_asked_for_answers_406_with_an_operation_outcome(with_documents, params, accept):
    gateway, ids = with_documents
    headers = {**gateway.as_hcp(), **({"Accept": accept} if accept else {})}

    answers = [gateway.client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + SPID, **params},
                                  headers=headers),
               gateway.client.get(f"/fhir/Binary/{ids[0]}", params=params, headers=headers),
               gateway.client.get("/fhir/metadata", params=params, headers=headers)]

    assert [a.status_code for a in answers] == [406, 406, 406]
    for answer in answers:
        assert answer.headers["content-type"] == "application/fhir+json"
        assert OperationOutcome.model_validate(answer.json()).issue[0].code == "not-supported"


def test_accept_with_json_among_xml_is_served_json(with_documents):
    gateway, _ = with_documents
    headers = {**gateway.as_hcp(), "Accept": "application/fhir+xml;q=0.9, application/fhir+json"}

    answer = gateway.client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + SPID}, headers=headers)

    assert answer.status_code == 200 and answer.json()["total"] == 3


def test_head_answers_the_get_headers_without_a_body_wherever_get_works(with_documents):
    gateway, ids = with_documents
    paths = [f"/fhir/DocumentReference?patient.identifier={SEARCH}{SPID}", f"/fhir/DocumentReference/{ids[0]}",
             f"/fhir/Binary/{ids[0]}", f"/fhir/Patient?family=Muster", "/fhir/metadata",
             f"/fhir/Consent?patient:identifier={SEARCH}{SPID}"]

    for path in paths:
        got = gateway.client.get(path, headers=gateway.as_hcp())
        head = gateway.client.head(path, headers=gateway.as_hcp())
        assert (head.status_code, head.content) == (got.status_code, b""), path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["content-length"] == str(len(got.content)), path


def test_head_without_a_token_is_refused_like_get(sqlite_gateway):
    answer = sqlite_gateway.client.head(f"/fhir/DocumentReference?patient.identifier={SEARCH}{SPID}")

    assert (answer.status_code, answer.content) == (401, b"")


@pytest.mark.parametrize("method, path, allow", [
    ("DELETE", "/fhir/DocumentReference", "GET, HEAD"),
    ("PUT", "/fhir/Binary/abc", "GET, HEAD"),
    ("POST", "/fhir/metadata", "GET, HEAD"),
    ("PATCH", "/fhir/Consent/abc", "DELETE, GET, HEAD, PUT"),
    ("GET", "/fhir", "POST"),
])
def test_every_405_names_the_allowed_methods(sqlite_gateway, method, path, allow):
    answer = sqlite_gateway.client.request(method, path, headers=sqlite_gateway.as_hcp())

    assert answer.status_code == 405
    assert answer.headers["allow"] == allow
    assert OperationOutcome.model_validate(answer.json()).issue[0].code == "not-supported"


def test_post_search_with_a_form_body_answers_as_the_get(with_documents):
    gateway, _ = with_documents
    query = {"patient.identifier": SEARCH + SPID, "_count": "2"}

    got = gateway.client.get("/fhir/DocumentReference", params=query, headers=gateway.as_hcp())
    posted = gateway.client.post("/fhir/DocumentReference/_search", data=query,
                                 headers={**gateway.as_hcp(), **FORM})

    assert posted.status_code == 200, posted.text
    assert Bundle.model_validate(posted.json()).total == 3
    assert [e["resource"]["id"] for e in posted.json()["entry"]] == [e["resource"]["id"] for e in got.json()["entry"]]


@pytest.mark.parametrize("path, form", [
    ("/fhir/Patient/_search", {"family": "Muster"}),
    ("/fhir/Consent/_search", {"patient:identifier": SEARCH + SPID}),
])
def test_post_search_works_for_every_search(with_documents, path, form):
    gateway, _ = with_documents
    headers = gateway.as_hcp() if "Patient" in path else gateway.tokens.headers(gateway.tokens.patient())

    posted = gateway.client.post(path, data=form, headers={**headers, **FORM})
    got = gateway.client.get(path.removesuffix("/_search"), params=form, headers=headers)

    assert posted.status_code == got.status_code == 200, posted.text
    assert Bundle.model_validate(posted.json()).total == got.json()["total"] >= 1


def test_post_search_of_the_audit_trail_is_the_patients_trail(with_documents):
    gateway, _ = with_documents
    patient = gateway.tokens.headers(gateway.tokens.patient())

    posted = gateway.client.post("/fhir/AuditEvent/_search", data={"entity.identifier": SEARCH + SPID},
                                 headers={**patient, **FORM})

    assert posted.status_code == 200, posted.text
    assert Bundle.model_validate(posted.json()).total >= 1
    assert {e["resource"]["resourceType"] for e in posted.json()["entry"]} == {"AuditEvent"}


def test_post_search_with_another_body_type_is_a_415_and_without_a_token_a_401(with_documents):
    gateway, _ = with_documents

    json_body = gateway.client.post("/fhir/DocumentReference/_search", content=b"{}", headers=gateway.as_hcp())
    anonymous = gateway.client.post("/fhir/DocumentReference/_search", data={"patient.identifier": SEARCH + SPID},
                                    headers=FORM)

    assert json_body.status_code == 415
    assert OperationOutcome.model_validate(json_body.json()).issue[0].code == "not-supported"
    assert anonymous.status_code == 401


def test_lenient_handling_ignores_unknown_parameters_and_names_them(with_documents):
    gateway, _ = with_documents
    query = {"patient.identifier": SEARCH + SPID, "colour": "blue", "_sort": "date"}

    strict = gateway.client.get("/fhir/DocumentReference", params=query, headers=gateway.as_hcp())
    lenient = gateway.client.get("/fhir/DocumentReference", params=query,
                                 headers={**gateway.as_hcp(), "Prefer": "handling=lenient"})

    assert strict.status_code == 400
    assert lenient.status_code == 200, lenient.text
    bundle = Bundle.model_validate(lenient.json())
    outcomes = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert bundle.total == 3 and len(lenient.json()["entry"]) == 4
    assert [i["expression"] for i in outcomes[0]["resource"]["issue"]] == [["_sort"], ["colour"]]
    assert {i["severity"] for i in outcomes[0]["resource"]["issue"]} == {"warning"}


def test_lenient_handling_does_not_widen_a_search_without_its_patient(with_documents):
    gateway, _ = with_documents

    answer = gateway.client.get("/fhir/DocumentReference", params={"colour": "blue"},
                                headers={**gateway.as_hcp(), "Prefer": "handling=lenient"})

    assert answer.status_code == 400
    OperationOutcome.model_validate(answer.json())


def test_answers_over_a_kilobyte_are_gzipped_when_accepted(with_documents):
    gateway, _ = with_documents
    query = {"patient.identifier": SEARCH + SPID}

    zipped = gateway.client.get("/fhir/DocumentReference", params=query,
                                headers={**gateway.as_hcp(), "Accept-Encoding": "gzip"})
    plain = gateway.client.get("/fhir/DocumentReference", params=query,
                               headers={**gateway.as_hcp(), "Accept-Encoding": "identity"})
    small = gateway.client.get("/health/live", headers={"Accept-Encoding": "gzip"})

    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers and "content-encoding" not in small.headers
    assert {**orjson.loads(zipped.content), "id": ""} == {**plain.json(), "id": ""}  # httpx decoded it
    assert int(zipped.headers["content-length"]) < len(plain.content)
    assert gzip.compress(b"x") and len(plain.content) > 1024


def test_cors_is_off_by_default(sqlite_gateway):
    preflight = sqlite_gateway.client.options("/fhir/DocumentReference", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
    simple = sqlite_gateway.client.get("/fhir/metadata", headers={"Origin": "https://app.example"})

    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in simple.headers


def test_cors_answers_configured_origins_only_with_preflight(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), cors_origins="https://app.example, https://b.example") as gw:
        preflight = gw.client.options("/fhir/DocumentReference", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization, Prefer"})
        other = gw.client.options("/fhir/DocumentReference", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        simple = gw.client.get("/fhir/metadata", headers={"Origin": "https://b.example"})
        unauthenticated = gw.client.get(f"/fhir/DocumentReference?patient.identifier={SEARCH}{SPID}",
                                        headers={"Origin": "https://app.example"})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert simple.headers["access-control-allow-origin"] == "https://b.example"
    assert "etag" in simple.headers["access-control-expose-headers"].lower()
    assert unauthenticated.status_code == 401  # CORS opens the door to no one: the token still decides


@pytest.mark.parametrize("params", [{"_summary": "count"}, {"_count": "0"}, {"_summary": "count", "_total": "accurate"}])
def test_the_total_only_is_answered_without_entries(with_documents, params):
    gateway, _ = with_documents

    answer = gateway.client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + SPID, **params},
                                headers=gateway.as_hcp())

    assert answer.status_code == 200, answer.text
    bundle = Bundle.model_validate(answer.json())
    assert (bundle.total, bundle.entry, [link.relation for link in bundle.link]) == (3, None, ["self"])


def test_a_count_above_the_maximum_is_capped_and_the_self_link_says_so(with_documents):
    gateway, _ = with_documents

    answer = gateway.client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + SPID,
                                                                    "_count": "5000", "_total": "none"},
                                headers=gateway.as_hcp())

    assert answer.status_code == 200, answer.text
    assert len(answer.json()["entry"]) == 3
    assert "_count=100" in answer.json()["link"][0]["url"]


@pytest.mark.parametrize("params", [{"_total": "maybe"}, {"_summary": "text"}])
def test_unserved_result_parameters_are_a_400_outcome(with_documents, params):
    gateway, _ = with_documents

    answer = gateway.client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + SPID, **params},
                                headers=gateway.as_hcp())

    assert answer.status_code == 400
    OperationOutcome.model_validate(answer.json())


def test_elements_subsets_search_entries_and_reads_keeping_mandatory_elements(with_documents):
    gateway, ids = with_documents
    from fhir.resources.R4B.documentreference import DocumentReference

    search = gateway.client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + SPID,
                                                                    "_elements": "type"}, headers=gateway.as_hcp())
    read = gateway.client.get(f"/fhir/DocumentReference/{ids[0]}", params={"_elements": "subject,date"},
                              headers=gateway.as_hcp())

    entry = search.json()["entry"][0]["resource"]
    assert set(entry) == {"resourceType", "id", "meta", "status", "content", "type"}
    assert set(read.json()) == {"resourceType", "id", "meta", "status", "content", "subject", "date"}
    assert read.json()["meta"]["tag"][-1]["code"] == "SUBSETTED"
    DocumentReference.model_validate(entry)
    DocumentReference.model_validate(read.json())


def test_patient_reference_and_subject_search_like_the_identifier_under_the_same_consent(with_documents):
    gateway, _ = with_documents
    pid = gateway.services.exchange.patients.pid_for_spid(SPID)
    by_spid = gateway.client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + SPID},
                                 headers=gateway.as_hcp())
    stranger = gateway.tokens.headers(gateway.tokens.hcp(gln="7601000000019"))

    answers = [gateway.client.get("/fhir/DocumentReference", params={name: value}, headers=gateway.as_hcp())
               for name, value in (("patient", f"Patient/{pid}"), ("subject", f"Patient/{pid}"), ("patient", pid))]
    refused = gateway.client.get("/fhir/DocumentReference", params={"patient": f"Patient/{pid}"}, headers=stranger)
    unknown = gateway.client.get("/fhir/DocumentReference", params={"patient": "Patient/nobody"},
                                 headers=gateway.as_hcp())

    ids = {e["resource"]["id"] for e in by_spid.json()["entry"]}
    for answer in answers:
        assert answer.status_code == 200, answer.text
        Bundle.model_validate(answer.json())
        assert {e["resource"]["id"] for e in answer.json()["entry"]} == ids
    assert refused.status_code == 200 and refused.json()["total"] == 0
    assert unknown.status_code == 200 and unknown.json()["total"] == 0
