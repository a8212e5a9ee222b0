"""A remote MHD Document Recipient's answers → the deliverer's outcomes. The answers are the real ones:
the CH EPR examples (read in place) and what the gateway's own FHIR face answers as a recipient (its
transaction-response and its one error table, `gateway/http/outcomes.py`), plus broken answers on purpose."""

from __future__ import annotations

import orjson
import pytest

from adapters.cara.errors import Conflict as RecordConflict
from adapters.cara.errors import InvalidInput, UnknownPatient, unknown_relation_target
from adapters.cara.fhir_mapping import transaction_response
from adapters.community.mhd_answers import outcome_of
from adapters.community.outcomes import (
    AlreadyDelivered,
    Conflict,
    Delivered,
    RegistryError,
    Rejected,
    TransportFailure,
    WaitingPatient,
)
from adapters.community.transport import HttpAnswer
from consent.errors import ProvideLevelViolation
from gateway.auth.errors import AccessRefused
from gateway.http.outcomes import handle_refused, record_error_response
from official_examples import FIXTURES, require_examples

BASE = "https://cara.example.ch/fhir"
UUID_1, UUID_2 = "urn:uuid:5b8e7f7a-9c3d-4e1f-8a2b-0c1d2e3f4a5b", "urn:uuid:6c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
SET = "urn:oid:2.25.281629131911129366134131011916417381917"
DOCS = ("urn:oid:2.25.11", "urn:oid:2.25.12")


def outcome(answer: HttpAnswer, documents: int = 1):
    return outcome_of(answer, entry_count=1 + 2 * documents, entry_uuids=(UUID_1, UUID_2)[:documents],
                      submission_set_unique_id=SET, document_unique_ids=DOCS[:documents])


def fhir(status: int, body) -> HttpAnswer:
    return HttpAnswer(status, "application/fhir+json", body if isinstance(body, bytes) else orjson.dumps(body))


def recipient_answer(*statuses: str) -> HttpAnswer:
    """The gateway's own ITI-65 answer (one document per pair after the List)."""
    locations = [(statuses[0], f"{BASE}/List/set-1")]
    for number, status in enumerate(statuses[1:], start=1):
        locations += [(status, f"{BASE}/DocumentReference/entry-{number}"), (status, f"{BASE}/Binary/entry-{number}")]
    return fhir(200, transaction_response(locations, last_modified="2026-01-01T00:00:00Z"))


def error_answer(error) -> HttpAnswer:
    response = record_error_response(error)
    return HttpAnswer(response.status_code, response.media_type, bytes(response.body))


def test_the_official_provide_answer_is_delivered_with_the_recipients_reference():
    folder = require_examples(FIXTURES / "ch-epr-fhir")
    raw = (folder / "Bundle-BundleProvideDocument-Response.json").read_bytes()

    result = outcome(fhir(200, raw))

    assert result == Delivered(locations=((UUID_1, "DocumentReference/50383ae5-49e5-4dea-b0e6-660cb9e7b91f"),))


def test_created_documents_are_delivered_with_each_reference_in_order():
    assert outcome(recipient_answer("201 Created", "201 Created", "201 Created"), documents=2) == Delivered(
        locations=((UUID_1, "DocumentReference/entry-1"), (UUID_2, "DocumentReference/entry-2")))


def test_the_recipients_idempotent_answer_is_already_delivered():
    assert outcome(recipient_answer("200 OK", "200 OK")) == AlreadyDelivered(
        (), ((UUID_1, "DocumentReference/entry-1"),))


def test_one_created_beside_one_held_is_delivered():
    assert outcome(recipient_answer("201 Created", "200 OK", "201 Created"), documents=2).kind == "delivered"


def test_a_versioned_location_names_the_resource_without_its_version():
    answer = fhir(200, {"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201 Created", "location": "List/1/_history/1"}},
        {"response": {"status": "201", "location": f"{BASE}/DocumentReference/abc/_history/1"}},
        {"response": {"status": "201 Created", "location": "Binary/abc"}}]})

    assert outcome(answer) == Delivered(locations=((UUID_1, "DocumentReference/abc"),))


@pytest.mark.parametrize(("error", "expected"), [
    (RecordConflict("document uniqueId urn:oid:2.25.11 is already stored with other content",
                    location="DocumentReference.masterIdentifier"),
     Conflict(SET, DOCS[:1], "conflict", "document uniqueId urn:oid:2.25.11 is already stored with other content",
              (RegistryError("conflict", "document uniqueId urn:oid:2.25.11 is already stored with other content",
                             "DocumentReference.masterIdentifier", "Error"),))),
    (UnknownPatient("SPID 761337614242240684 is not known"),
     WaitingPatient("the recipient does not know the patient (SPID 761337614242240684 is not known)")),
    (unknown_relation_target("DocumentReference/gone"),
     Rejected("business-rule", "relatesTo target DocumentReference/gone is not a document of this patient",
              (RegistryError("business-rule", "relatesTo target DocumentReference/gone is not a document of this "
                             "patient", "DocumentReference.relatesTo.target", "Error"),))),
    (ProvideLevelViolation(requested="normal", minimum="restricted"),
     Rejected("business-rule", "confidentiality normal is below the patient's provide level restricted",
              (RegistryError("business-rule", "confidentiality normal is below the patient's provide level "
                             "restricted", "DocumentReference.securityLabel", "Error"),))),
    (InvalidInput("the Bundle is not valid FHIR R4"),
     Rejected("invalid", "the Bundle is not valid FHIR R4",
              (RegistryError("invalid", "the Bundle is not valid FHIR R4", None, "Error"),))),
], ids=["conflict", "unknown-patient", "unknown-original", "provide-level-rejected", "invalid"])
def test_the_recipients_refusals_keep_its_code_and_words(error, expected):
    assert outcome(error_answer(error)) == expected


def test_the_official_unknown_patient_outcome_waits_for_the_patient():
    folder = require_examples(FIXTURES / "ch-epr-fhir")
    raw = (folder / "OperationOutcome-MhdOperationOutcomeErrorXDSPatientIDReconciliationError.json").read_bytes()

    assert outcome(fhir(422, raw)) == WaitingPatient(
        "the recipient does not know the patient (XDSPatientIDReconciliationError)")


def test_a_refused_access_is_rejected_with_the_decisions_reason():
    import asyncio

    response = asyncio.run(handle_refused(None, AccessRefused("blocked: the patient's exclusion list names 7601000000002")))
    answer = HttpAnswer(response.status_code, response.media_type, bytes(response.body))

    assert outcome(answer) == Rejected("forbidden", "blocked: the patient's exclusion list names 7601000000002", (
        RegistryError("forbidden", "blocked: the patient's exclusion list names 7601000000002", None, "Error"),))


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 425, 429])
def test_what_says_nothing_of_the_document_is_a_transport_failure(status):
    answer = error_answer(RecordConflict("x")) if status == 429 else fhir(status, b"<html>Bad gateway</html>")

    result = outcome(HttpAnswer(status, answer.content_type, answer.body))

    assert isinstance(result, TransportFailure)
    assert result.text.startswith(f"ITI-65 HTTP {status}")


def test_a_503_outcome_keeps_the_recipients_words():
    answer = fhir(503, {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "transient", "diagnostics": "a dependency of the gateway is unavailable"}]})

    assert outcome(answer) == TransportFailure("ITI-65 HTTP 503: a dependency of the gateway is unavailable")


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json", "not a transaction-response"),
    ({"resourceType": "OperationOutcome"}, "not a transaction-response"),
    ({"resourceType": "Bundle", "type": "batch-response", "entry": []}, "not a transaction-response"),
    ({"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201 Created", "location": "List/1"}}]}, "answers 1 entries, the request had 3"),
    ({"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201 Created", "location": "List/1"}},
        {"response": {"status": "400 Bad Request", "location": "DocumentReference/1"}},
        {"response": {"status": "201 Created", "location": "Binary/1"}}]}, "entry 1 of the transaction-response"),
    ({"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201 Created", "location": "List/1"}},
        {"response": {"status": "201 Created", "location": "DocumentReference/../../etc"}},
        {"response": {"status": "201 Created", "location": "Binary/1"}}]}, "names 0 DocumentReferences for 1"),
    ({"resourceType": "Bundle", "type": "transaction-response", "entry": [1, 2, 3]}, "entry 0"),
], ids=["not-json", "outcome", "batch", "short", "entry-refused", "hostile-location", "not-objects"])
def test_a_success_status_with_an_answer_that_cannot_be_read_is_a_transport_failure(body, reason):
    result = outcome(fhir(200, body))

    assert isinstance(result, TransportFailure)
    assert reason in result.text


def test_a_redirect_is_rejected_for_an_operator():
    assert outcome(HttpAnswer(302, "text/html", b"")) == Rejected(
        "http-302", "the recipient redirects elsewhere: mhd_url is not the recipient's FHIR base")


def test_a_refusal_without_an_operation_outcome_says_so():
    assert outcome(HttpAnswer(404, "text/html", b"<h1>Not Found</h1>")) == Rejected(
        "http-404", "HTTP 404 without an OperationOutcome")


def test_the_recipients_words_are_one_bounded_line_and_a_code_must_look_like_one():
    hostile = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "details": {"text": "not a code\nbut words"},
         "diagnostics": "line one\r\nline two\x1b[31m" + "x" * 2000, "expression": ["Bundle.entry[1]"]},
        {"severity": "warning", "code": "informational", "details": {"coding": [{"code": "XDSExtraMetadataNotSaved"}]}}]}

    result = outcome(fhir(400, hostile))

    assert isinstance(result, Rejected)
    assert result.code == "processing"
    assert result.errors[0].context == ("line one  line two [31m" + "x" * 2000)[:500]
    assert result.errors[0].location == "Bundle.entry[1]"
    assert result.errors[1] == RegistryError("XDSExtraMetadataNotSaved", "", None, "Warning")
    assert "\n" not in result.text and "\x1b" not in result.text


def test_at_most_twenty_issues_are_kept():
    many = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "invalid", "diagnostics": f"issue {n}"} for n in range(100)]}

    assert [e.context for e in outcome(fhir(400, many)).errors] == [f"issue {n}" for n in range(20)]
