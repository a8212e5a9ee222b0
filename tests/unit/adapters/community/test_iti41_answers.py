"""Every answer of the community's repository → the outcome the outbox acts on. The answers are the
recorded RegistryResponse (`samples/ITI-41_response_raw.xml`, multipart and plain) with the platform's
error codes, contexts and locations as the kit and cara-community.md quote them."""

from __future__ import annotations

import datetime as dt

import pytest

from adapters.community.authors import ResponsibleProfessional
from adapters.community.ebrim import OutgoingSubmission
from adapters.community.iti41 import outcome_of
from adapters.community.outcomes import (
    AlreadyDelivered,
    Conflict,
    Delivered,
    RaiseConfidentiality,
    RegistryError,
    Rejected,
    TransportFailure,
)
from adapters.community.transport import HttpAnswer
from unit.adapters.community.community_fixtures import (
    MPI_PID,
    PRINCIPAL_GLN,
    SET_ENTRY_UUID,
    SET_UNIQUE_ID,
    outgoing,
    recorded_iti41_answer,
    registry_answer,
    soap_fault,
    submission_set,
)

DOCUMENT_ID = "2.25.199933111024518419341209463045829114371"  # the fixture document's uniqueId, as sent
EMEDO_CONSENT = ("XDSRepositoryError", "Consent filter applied", "Repository")
SENSE_CONSENT = ("XDSRegistryError", "Unexpected registry error.", "Sense XDS Registry")
NON_IDENTICAL = ("XDSNonIdenticalHash", f"The XDS document with the unique ID \"{DOCUMENT_ID}\" already exists in the "
                 "sense repository, but the hash of the provided document does not match the hash of the stored "
                 "document!", "Repository")
UNKNOWN_CODE = ("XDSRegistryMetadataError", "Code 419891999 with scheme 2.16.840.1.113883.6.96 for classCode not found "
                "in the Affinity Domain configuration", "urn:uuid:5b8e7f7a-9c3d-4e1f-8a2b-0c1d2e3f4a5b")


def submission(confidentiality: str = "normal", set_unique_id: str = SET_UNIQUE_ID) -> OutgoingSubmission:
    return OutgoingSubmission(submission_set(), set_unique_id, SET_ENTRY_UUID, (outgoing(),), MPI_PID, confidentiality,
                              dt.datetime(2024, 5, 2, tzinfo=dt.UTC), ResponsibleProfessional(PRINCIPAL_GLN, "V"))


def error(code, context, location, severity="Error") -> RegistryError:
    return RegistryError(code, context, location, severity)


def test_the_recorded_success_multipart_and_plain():
    content_type, body = recorded_iti41_answer()
    assert outcome_of(HttpAnswer(200, content_type, body), submission()) == Delivered(())
    assert outcome_of(registry_answer(status="Success", multipart=False), submission()) == Delivered(())


def test_success_keeps_the_warnings():
    answer = registry_answer([("XDSExtraMetadataNotSaved", "slot foo ignored", None)], status="Success",
                             severity="Warning")
    assert outcome_of(answer, submission()) == Delivered((error("XDSExtraMetadataNotSaved", "slot foo ignored", None,
                                                                "Warning"),))


def test_a_duplicate_submission_set_means_the_earlier_attempt_landed():
    errors = [("XDSDuplicateUniqueIdInRegistry", f"SubmissionSet uniqueId {SET_UNIQUE_ID} already exists", None),
              ("XDSDuplicateUniqueIdInRegistry", f"DocumentEntry uniqueId {DOCUMENT_ID} already exists", None)]
    assert outcome_of(registry_answer(errors), submission()) == AlreadyDelivered(tuple(error(*e) for e in errors))


def test_the_set_is_named_as_a_whole_token_only():
    errors = [("XDSDuplicateUniqueIdInRegistry", "SubmissionSet uniqueId 2.25.123 already exists", None)]
    outcome = outcome_of(registry_answer(errors), submission(set_unique_id="2.25.12"))
    assert isinstance(outcome, Conflict)


def test_a_document_uniqueid_under_another_submission_set_is_a_conflict():
    errors = [("XDSDuplicateUniqueIdInRegistry", f"DocumentEntry uniqueId {DOCUMENT_ID} already exists", "Registry")]
    assert outcome_of(registry_answer(errors), submission()) == Conflict(
        SET_UNIQUE_ID, (DOCUMENT_ID,), "XDSDuplicateUniqueIdInRegistry",
        f"DocumentEntry uniqueId {DOCUMENT_ID} already exists", (error(*errors[0]),))


def test_other_bytes_under_a_known_document_uniqueid_is_a_conflict():
    assert outcome_of(registry_answer([NON_IDENTICAL]), submission()) == Conflict(
        SET_UNIQUE_ID, (DOCUMENT_ID,), "XDSNonIdenticalHash", NON_IDENTICAL[1], (error(*NON_IDENTICAL),))


@pytest.mark.parametrize("refusal", [EMEDO_CONSENT, SENSE_CONSENT], ids=["emedo", "former platform"])
@pytest.mark.parametrize(("level", "next_level"), [("normal", "restricted"), ("restricted", "secret")])
def test_the_consent_filter_raises_the_confidentiality(refusal, level, next_level):
    outcome = outcome_of(registry_answer([refusal]), submission(level))
    assert outcome == RaiseConfidentiality(level, next_level, refusal[0], refusal[1], (error(*refusal),))


@pytest.mark.parametrize("refusal", [EMEDO_CONSENT, SENSE_CONSENT], ids=["emedo", "former platform"])
def test_refused_at_secret_there_is_nothing_higher(refusal):
    assert outcome_of(registry_answer([refusal]), submission("secret")) == Rejected(
        refusal[0], f"refused even at secret: {refusal[1]}", (error(*refusal),))


def test_an_unexpected_registry_error_elsewhere_is_not_the_consent_filter():
    other = ("XDSRegistryError", "Unexpected registry error.", "Registry Adapter")
    assert outcome_of(registry_answer([other]), submission()) == Rejected(
        "XDSRegistryError", "XDSRegistryError: Unexpected registry error. (at Registry Adapter)", (error(*other),))


def test_a_metadata_error_is_rejected_with_the_communitys_code_and_text_and_every_error_kept():
    second = ("XDSRegistryMetadataError", "sourcePatientInfo PID-5 missing", None)
    outcome = outcome_of(registry_answer([UNKNOWN_CODE, second]), submission())
    assert outcome == Rejected("XDSRegistryMetadataError", f"XDSRegistryMetadataError: {UNKNOWN_CODE[1]} (at "
                               f"{UNKNOWN_CODE[2]}); XDSRegistryMetadataError: sourcePatientInfo PID-5 missing",
                               (error(*UNKNOWN_CODE), error(*second)))


def test_failure_without_any_error():
    assert outcome_of(registry_answer([]), submission()) == Rejected(
        "Failure", "the community answered Failure without an error", ())


@pytest.mark.parametrize(("answer", "text"), [
    (soap_fault("Security token expired"), "HTTP 500: SOAP fault soap:Receiver: Security token expired"),
    (soap_fault("wsse:InvalidSecurity", code="soap:Sender", status=400),
     "HTTP 400: SOAP fault soap:Sender: wsse:InvalidSecurity"),
    (HttpAnswer(500, "text/html", b"<html><body>Internal Server Error</body></html>"),
     "HTTP 500: no RegistryResponse (the answer's content type is text/html, not SOAP)"),
    (HttpAnswer(202, "", b""), "HTTP 202: no RegistryResponse (the answer's content type is (none), not SOAP)"),
    (HttpAnswer(200, "application/soap+xml", b"<soap:Envelope"), "HTTP 200: no RegistryResponse (the answer is not XML"),
    (HttpAnswer(200, 'multipart/related; boundary="b"; start="<nope>"', b"--b\r\nContent-ID: <x>\r\n\r\n<a/>\r\n--b--"),
     "HTTP 200: no RegistryResponse (the multipart answer has no part with the start Content-ID <nope>)"),
    (HttpAnswer(503, "application/soap+xml", b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
                b"<s:Body><x/></s:Body></s:Envelope>"), "HTTP 503: the answer holds x, not a RegistryResponse"),
])
def test_anything_that_says_nothing_about_the_document_is_transport_class(answer, text):
    outcome = outcome_of(answer, submission())
    assert isinstance(outcome, TransportFailure) and outcome.text.startswith(text), outcome
    assert outcome.soap_fault == ("SOAP fault" in text)


def test_a_client_error_that_is_not_soap_is_rejected():
    assert outcome_of(HttpAnswer(413, "text/plain", b"Request Entity Too Large"), submission()) == Rejected(
        "HTTP 413", "the repository refused the request: the answer's content type is text/plain, not SOAP")


def test_an_answer_with_a_doctype_is_not_read():
    body = (b'<!DOCTYPE x [<!ENTITY e "boom">]><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
            b"<soap:Body>&e;</soap:Body></soap:Envelope>")
    outcome = outcome_of(HttpAnswer(200, "application/soap+xml", body), submission())
    assert outcome == TransportFailure("HTTP 200: no RegistryResponse (the answer carries a DOCTYPE: refused)")
