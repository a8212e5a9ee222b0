"""Every exchange leaves its audit record: a full scenario, fail-closed behaviour, the patient's trail."""

import json

import orjson
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.operationoutcome import OperationOutcome

from audit.ledger import verify_ledger
from conftest import HCP_GLN, SPID, grant_consent, running_gateway, sqlite_url
from functional.helpers import document_ids, row_counts
from gateway.samples import pdf_document, provide_bundle

TRANSACTION_SYSTEMS = ("urn:ihe:event-type-code", "urn:e-health-suisse:event-type-code")
ATC = "urn:oid:2.16.756.5.30.1.127.3.10.7"
TRAIL = {"entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"}


def summary(event: dict) -> tuple:
    """(transaction, ATC code, outcome, role, user id, purpose, patient SPID) of a stored AuditEvent."""
    codes = {c["system"]: c["code"] for c in event["subtype"]}
    transaction = next((codes[s] for s in TRANSACTION_SYSTEMS if s in codes), event["type"]["code"])
    user = next((a for a in event["agent"] if a.get("requestor")), None)
    patient = next((e["what"]["identifier"]["value"] for e in event.get("entity", [])
                    if e["what"]["identifier"].get("system") == "urn:oid:2.16.756.5.30.1.127.3.10.3"
                    and e["role"]["code"] == "1"), None)
    return (transaction, codes.get(ATC), event["outcome"], user and user["role"][0]["coding"][0]["code"],
            user and user["altId"], user and user["purposeOfUse"][0]["coding"][0]["code"], patient)


def ledger(gateway) -> list[tuple]:
    return [summary(e) for e in gateway.services.auditor.ledger.all_records()]


def test_a_full_scenario_leaves_exactly_its_audit_records(gateway):
    gateway.register_patient(grant_hcp=None)
    before = len(ledger(gateway))
    tcu, patient = gateway.tokens.headers(gateway.tokens.tcu()), gateway.tokens.headers(gateway.tokens.patient())
    hcp = gateway.as_hcp()
    emergency = gateway.tokens.headers(gateway.tokens.hcp(purpose="EMER"))

    entry_id = document_ids(gateway.provide(provide_bundle(spid=SPID, author_role="TCU", documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["x"])}]), headers=tcu).json())[0]
    grant_id = gateway.grant(SPID, HCP_GLN, "normal")
    assert gateway.find(headers=hcp).json()["total"] == 1
    assert gateway.client.get(f"/fhir/Binary/{entry_id}", headers=hcp).status_code == 200
    assert gateway.client.get(f"/fhir/Binary/{entry_id}", headers=emergency).status_code == 200
    assert gateway.client.delete(f"/fhir/Consent/{grant_id}", headers=patient).status_code == 204
    assert gateway.client.get(f"/fhir/Binary/{entry_id}", headers=hcp).status_code == 404
    assert gateway.find(headers={"Authorization": "Bearer not.a.token"}).status_code == 401

    assert ledger(gateway)[before:] == [
        ("ITI-65", "ATC_DOC_CREATE", "0", "TCU", "infomed-migration", "AUTO", SPID),
        ("PPQ-3", "ATC_POL_CREATE_AUT_PART_AL", "0", "PAT", SPID, "NORM", SPID),
        ("ITI-67", "ATC_DOC_SEARCH", "0", "HCP", HCP_GLN, "NORM", SPID),
        ("ITI-68", "ATC_DOC_READ", "0", "HCP", HCP_GLN, "NORM", SPID),
        ("ITI-68", "ATC_DOC_READ", "0", "HCP", HCP_GLN, "EMER", SPID),
        ("PPQ-3", "ATC_POL_REMOVE_AUT_PART_AL", "0", "PAT", SPID, "NORM", SPID),
        ("ITI-68", "ATC_DOC_READ", "4", "HCP", HCP_GLN, "NORM", SPID),
        ("authentication", None, "4", None, None, None, None),
    ]
    refused_auth = gateway.services.auditor.ledger.all_records()[-1]
    assert "GET /fhir/DocumentReference: invalid token: malformed token" in refused_auth["outcomeDesc"]
    assert verify_ledger(engine=gateway.runtime.engine, public_keys=gateway.services.auditor.ledger.public_keys).ok


def test_reading_a_document_reference_is_a_metadata_read_not_the_documents_retrieval(gateway):
    """Issue 27 item 9: a DocumentReference read (ITI-67) hands over metadata only: the patient's trail calls
    it a document search naming the document (ATC_DOC_SEARCH, BALP read), never "Document retrieval"
    (ATC_DOC_READ), which only ITI-68 is — over FHIR as on the patient's page, granted or refused."""
    gateway.register_patient()
    entry_id = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["x"])}])).json())[0]
    stranger = gateway.tokens.headers(gateway.tokens.hcp(gln="7601000000019"))
    before = len(gateway.services.auditor.ledger.all_records())

    assert gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=gateway.as_hcp()).status_code == 200
    assert gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=stranger).status_code == 404
    assert gateway.client.get(f"/fhir/Binary/{entry_id}", headers=gateway.as_hcp()).status_code == 200

    events = gateway.services.auditor.ledger.all_records()[before:]
    assert [summary(e)[:5] for e in events] == [
        ("ITI-67", "ATC_DOC_SEARCH", "0", "HCP", HCP_GLN),
        ("ITI-67", "ATC_DOC_SEARCH", "4", "HCP", "7601000000019"),
        ("ITI-68", "ATC_DOC_READ", "0", "HCP", HCP_GLN)]
    assert [e["action"] for e in events] == ["R", "R", "R"]
    documents = [[x["what"]["identifier"]["value"] for x in e["entity"] if x["role"]["code"] == "3"] for e in events]
    assert len({d for names in documents for d in names}) == 1 and all(len(names) == 1 for names in documents)
    trail = gateway.client.get("/fhir/AuditEvent", params=TRAIL, headers=gateway.tokens.headers(
        gateway.tokens.patient())).json()
    shown = [(e["resource"]["subtype"][0]["code"], e["resource"]["action"]) for e in trail["entry"]][-3:]
    assert shown == [("ATC_DOC_SEARCH", "E"), ("ATC_DOC_SEARCH", "E"), ("ATC_DOC_READ", "R")]


def test_every_stored_event_is_a_valid_r4_audit_event_with_trace_and_token_id(gateway):
    gateway.register_patient()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    response = gateway.client.get("/fhir/DocumentReference", params={"patient.identifier": TRAIL["entity.identifier"]},
                                  headers={**gateway.as_hcp(), "traceparent": traceparent})

    assert response.headers["traceparent"] == traceparent
    events = gateway.services.auditor.ledger.all_records()
    for event in events:
        AuditEvent.model_validate(event)
    search = events[-1]
    assert {"what": {"identifier": {"value": traceparent}}} == {"what": search["entity"][-1]["what"]}
    user = next(a for a in search["agent"] if a.get("requestor"))
    assert user["policy"][0].startswith("urn:ietf:params:oauth:jti:")
    assert search["source"]["site"] == gateway.runtime.settings.audit_source_oid


def test_a_traceparent_is_made_when_the_caller_sent_none(gateway):
    response = gateway.client.get("/fhir/metadata")

    assert response.headers["traceparent"].startswith("00-")
    assert len(response.headers["traceparent"]) == 55


def test_when_the_ledger_cannot_be_written_a_provide_stores_nothing_and_answers_503(gateway, monkeypatch):
    gateway.register_patient()
    before = row_counts(gateway.runtime)

    def broken(*_args, **_kwargs):
        raise OSError("audit disk full")

    monkeypatch.setattr(gateway.services.auditor.ledger, "append_many", broken)
    response = gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["x"])}]))

    assert response.status_code == 503
    assert response.json()["issue"][0]["code"] == "transient"
    assert row_counts(gateway.runtime) == before


def test_when_the_ledger_cannot_be_written_a_read_answers_503_without_the_document(gateway, monkeypatch):
    gateway.register_patient()
    content = pdf_document("Letter", ["secret-ish content 4711"])
    entry_id = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": content}])).json())[0]

    def broken(*_args, **_kwargs):
        raise OSError("audit disk full")

    monkeypatch.setattr(gateway.services.auditor.ledger, "append_many", broken)
    read = gateway.client.get(f"/fhir/Binary/{entry_id}", headers=gateway.as_hcp())
    found = gateway.find()

    assert (read.status_code, found.status_code) == (503, 503)
    assert b"4711" not in read.content
    assert "entry" not in found.json()


def test_when_the_ledger_cannot_be_written_a_policy_change_is_not_made(gateway, monkeypatch):
    gateway.register_patient(grant_hcp=None)
    gateway.provide(provide_bundle(spid=SPID, author_role="TCU", documents=[
        {"title": "L", "content": pdf_document("L", ["x"])}]), headers=gateway.tokens.headers(gateway.tokens.tcu()))
    before = row_counts(gateway.runtime)

    def broken(*_args, **_kwargs):
        raise OSError("audit disk full")

    monkeypatch.setattr(gateway.services.auditor.ledger, "append_many", broken)
    response = gateway.client.post("/fhir/Consent", content=orjson.dumps(grant_consent(spid=SPID, gln=HCP_GLN,
                                   level="normal")), headers=gateway.tokens.headers(gateway.tokens.patient()))
    monkeypatch.undo()

    assert response.status_code == 503
    assert row_counts(gateway.runtime) == before
    assert gateway.find().json()["total"] == 0


def test_the_patient_reads_their_trail_and_the_read_is_itself_recorded(gateway):
    gateway.register_patient()
    gateway.provide(provide_bundle(spid=SPID, documents=[{"title": "L", "content": pdf_document("L", ["x"])}]))
    gateway.find(headers=gateway.tokens.headers(gateway.tokens.hcp(purpose="EMER")))
    patient = gateway.tokens.headers(gateway.tokens.patient())

    first = gateway.client.get("/fhir/AuditEvent", params=TRAIL, headers=patient)
    second = gateway.client.get("/fhir/AuditEvent", params=TRAIL, headers=patient)

    assert first.status_code == 200
    codes = [e["resource"]["subtype"][0]["code"] for e in first.json()["entry"]]
    assert codes[-2:] == ["ATC_DOC_CREATE", "ATC_DOC_SEARCH"]
    assert first.json()["entry"][-1]["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "EMER"
    assert all(e["resource"]["type"]["code"] == "110106" for e in first.json()["entry"])
    assert [e["resource"]["subtype"][0]["code"] for e in second.json()["entry"]][-1] == "ATC_LOG_READ"
    assert second.json()["total"] == first.json()["total"] + 1


def test_the_trail_is_filtered_by_date(gateway):
    gateway.register_patient()
    patient = gateway.tokens.headers(gateway.tokens.patient())

    past = gateway.client.get("/fhir/AuditEvent", params=TRAIL | {"date": ["ge2000-01-01", "le2000-12-31"]},
                              headers=patient)

    assert past.status_code == 200
    assert past.json()["total"] == 0


@pytest.mark.parametrize("who", ["hcp", "other patient"])
def test_only_the_patient_reads_the_trail(gateway, who):
    gateway.register_patient()
    headers = gateway.as_hcp() if who == "hcp" else gateway.tokens.headers(gateway.tokens.patient("761337610499999991"))

    response = gateway.client.get("/fhir/AuditEvent", params=TRAIL, headers=headers)

    assert response.status_code == 403


def test_the_trail_needs_the_patient_identifier(gateway):
    response = gateway.client.get("/fhir/AuditEvent", params={"date": "ge2026-01-01"},
                                  headers=gateway.tokens.headers(gateway.tokens.patient()))

    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["entity.identifier"]


def test_audit_records_carry_no_document_content_nor_tokens(gateway):
    gateway.register_patient()
    token = gateway.tokens.hcp()
    gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["Zebra-Marker-99"])}]))
    gateway.find(headers=gateway.tokens.headers(token))

    stored = json.dumps(gateway.services.auditor.ledger.all_records())

    assert "Zebra-Marker-99" not in stored
    assert token not in stored and token.split(".")[2] not in stored


def test_a_refusal_at_the_http_face_is_audited_with_its_caller(gateway):
    before = len(ledger(gateway))

    response = gateway.client.post("/fhir", content=b"<Bundle/>",
                                   headers={**gateway.as_hcp(), "Content-Type": "application/fhir+xml"})

    assert response.status_code == 415
    records = gateway.services.auditor.ledger.all_records()[before:]
    assert [summary(e)[:5] for e in records] == [("HTTP", None, "4", "HCP", HCP_GLN)]
    assert records[0]["outcomeDesc"] == "POST /fhir: send the resource as application/fhir+json"


def test_a_bundle_that_is_not_json_is_audited_as_a_refused_provide(gateway):
    before = len(ledger(gateway))

    response = gateway.client.post("/fhir", content=b"{oops", headers=gateway.as_hcp())

    assert response.status_code == 400
    assert [s[:5] for s in ledger(gateway)[before:]] == [("ITI-65", None, "4", "HCP", HCP_GLN)]


TOO_MANY = "&".join(f"p{i}=1" for i in range(401))


@pytest.mark.parametrize("method, target, body, content_type, status, said", [
    ("GET", f"/fhir/DocumentReference?{TOO_MANY}", None, None, 400, "401 parameters"),
    ("GET", "/fhir/DocumentReference?_format=xml", None, None, 406, "XML is not served"),
    ("GET", "/fhir/DocumentReference?_count=many", None, None, 400, "_count"),
    ("POST", "/fhir/DocumentReference/_search", b"{}", "application/json", 415, "_search takes"),
    ("POST", "/fhir", b"{" + b" " * 20_000 + b"}", "application/fhir+json", 413, "exceeds the limit"),
], ids=["too-many-parameters", "format", "count", "search-form", "body-size"])
def test_a_refusal_before_any_route_is_audited_as_the_routes_refusals_are(tmp_path, method, target, body,
                                                                           content_type, status, said):
    """The middlewares that answer before routing (the body limit, the REST conventions) refuse through
    the same audited door as the app's handler: each refusal is one HTTP failure record naming the
    request and what was said, and nothing else is recorded."""
    with running_gateway(tmp_path, sqlite_url(tmp_path), max_body_bytes=10_000) as gateway:
        before = len(ledger(gateway))
        headers = {**gateway.as_hcp(), **({"Content-Type": content_type} if content_type else {})}
        response = gateway.client.request(method, target, content=body, headers=headers)

        assert response.status_code == status, response.text
        assert said in OperationOutcome.model_validate(response.json()).issue[0].diagnostics
        records = gateway.services.auditor.ledger.all_records()[before:]
        assert [summary(e)[:3] for e in records] == [("HTTP", None, "4")]
        path = target.split("?", 1)[0]
        assert records[0]["outcomeDesc"].startswith(f"{method} {path}: ")
        assert said in records[0]["outcomeDesc"]
