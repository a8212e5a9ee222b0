"""ITI-41 at the stub: the recorded request (with an assertion the stub's STS issued) is stored, and each
platform rule refuses a mutated request with the platform's answer, storing nothing."""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import re

import pytest
from lxml import etree

from community_stub.clients import recorded_iti41
from community_stub.soap import RS

from .conftest import NORMAL, RESTRICTED, SECRET, issue

SNOMED = "2.16.840.1.113883.6.96"
SWISS_EXTENSION = "2.16.756.5.30.1.127.3.4"


def post(stub, http, request):
    content_type, body = request.multipart()
    return http.post(stub.iti41_url, content=body, headers={"Content-Type": content_type})


def soap_part(answer) -> bytes:
    if answer.headers["content-type"].startswith("multipart/related"):
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            b"Content-Type: " + answer.headers["content-type"].encode() + b"\r\n\r\n" + answer.content)
        return message.get_payload()[0].get_payload(decode=True)
    return answer.content


def registry_errors(answer) -> tuple[str, list[tuple[str, str, str]]]:
    response = etree.fromstring(soap_part(answer)).find(f".//{{{RS}}}RegistryResponse")
    return response.get("status").rsplit(":", 1)[1], [
        (e.get("errorCode"), e.get("codeContext"), e.get("location"))
        for e in response.iterfind(f"{{{RS}}}RegistryErrorList/{{{RS}}}RegistryError")]


def fault_text(answer) -> str:
    return etree.fromstring(answer.content).findtext(".//{http://www.w3.org/2003/05/soap-envelope}Text")


def test_the_recorded_request_is_stored_and_answered_as_recorded(stub, http):
    request = recorded_iti41(issue(stub, http, NORMAL), stub=stub, patient=NORMAL)
    answer = post(stub, http, request)
    assert answer.status_code == 200
    content_type = answer.headers["content-type"]
    assert content_type.startswith("multipart/related") and 'start-info="application/soap+xml"' in content_type
    assert registry_errors(answer) == ("Success", [])
    envelope = etree.fromstring(soap_part(answer))
    assert envelope.findtext("{http://www.w3.org/2003/05/soap-envelope}Header/{http://www.w3.org/2005/08/addressing}Action") \
        == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
    stored = stub.documents[request.document_unique_id]
    assert (stored.entry_uuid, stored.submission_set_unique_id, stored.patient_id, stored.confidentiality,
            stored.size, stored.status) == (request.entry_uuid, request.submission_set_unique_id, NORMAL.mpi_pid,
                                            "17621005", len(request.document), "Approved")
    assert [d.unique_id for d in stub.stored] == [request.document_unique_id]
    assert stub.requests_to("iti41")[0].body == request.multipart()[1]


def test_plain_answers_when_switched(stub, http):
    stub.multipart_answers = False
    answer = post(stub, http, recorded_iti41(issue(stub, http, NORMAL), stub=stub, patient=NORMAL))
    assert answer.headers["content-type"].startswith("application/soap+xml")
    assert registry_errors(answer) == ("Success", [])


def _soap(request, old: bytes, new: bytes, count: int = 1):
    assert old in request.soap
    request.soap = request.soap.replace(old, new, count)
    return request


def _outside_assertion(request, transform):
    start = request.soap.index(b"<saml2:Assertion")
    end = request.soap.index(b"</saml2:Assertion>") + len(b"</saml2:Assertion>")
    request.soap = transform(request.soap[:start]) + request.soap[start:end] + transform(request.soap[end:])
    return request


def _reserialised(request):
    start = request.soap.index(b"<saml2:Assertion")
    end = request.soap.index(b"</saml2:Assertion>") + len(b"</saml2:Assertion>")
    wrapper = etree.fromstring(b'<w xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                               b'xmlns:s="http://www.w3.org/2001/XMLSchema">' + request.soap[start:end] + b"</w>")
    request.soap = request.soap[:start] + etree.tostring(wrapper[0]) + request.soap[end:]
    return request


def _no_start_info(request):
    request.start_info = False
    return request


TRANSPORT_RULES = [
    ("no start-info", _no_start_info, 415, "start-info"),
    ("line break outside the assertion", lambda r: _soap(r, b"</soap:Header>", b"</soap:Header>\n"), 500, "empty request"),
    ("pretty-printed body", lambda r: _outside_assertion(r, lambda b: b.replace(b"><", b">\n  <")), 500, "empty request"),
    ("space before xop:Include", lambda r: _soap(r, b"<xop:Include", b" <xop:Include"), 500, "empty request"),
    ("line break after xop:Include", lambda r: _soap(r, b"/></xds:Document>", b"/>\r\n</xds:Document>"), 500, "empty request"),
    ("XML comment", lambda r: _soap(r, b"<soap:Body>", b"<soap:Body><!-- x -->"), 500, "empty request"),
    ("re-serialised assertion", _reserialised, 400, "byte for byte"),
    ("assertion without the xsi/s declarations it relies on",
     lambda r: _soap(r, b' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:s="http://www.w3.org/2001/XMLSchema"', b""),
     400, "not well-formed"),
    ("Action not mustUnderstand", lambda r: _soap(r, b' soap:mustUnderstand="true"', b""), 400, "mustUnderstand"),
    ("xop:Include to no part", lambda r: _soap(r, b'href="cid:', b'href="cid:x'), 400, "names no MIME part"),
    ("schema-invalid body", lambda r: _soap(r, b"<ExtrinsicObject ", b'<ExtrinsicObject bogus="1" '), 400, "XDS.b schema"),
]


@pytest.mark.parametrize(("mutate", "status", "text"), [rule[1:] for rule in TRANSPORT_RULES],
                         ids=[rule[0] for rule in TRANSPORT_RULES])
def test_transport_rules_refuse_with_the_platforms_answer(stub, http, mutate, status, text):
    answer = post(stub, http, mutate(recorded_iti41(issue(stub, http, NORMAL), stub=stub, patient=NORMAL)))
    assert (answer.status_code, text in fault_text(answer)) == (status, True), answer.text
    assert stub.documents == {}


def test_reply_to_address_outside_the_addressing_namespace_is_answered_202_and_nothing_else(stub, http):
    request = recorded_iti41(issue(stub, http, NORMAL), stub=stub, patient=NORMAL)
    _soap(request, b"<Address>", b'<a:Address xmlns:a="urn:other">')
    _soap(request, b"</Address>", b"</a:Address>")
    answer = post(stub, http, request)
    assert (answer.status_code, answer.content) == (202, b"")
    assert stub.documents == {}


def test_an_expired_assertion_is_refused(stub, http):
    assertion = issue(stub, http, NORMAL)
    stub.sts.issued[assertion] = stub.sts.issued[assertion].__class__(**{
        **stub.sts.issued[assertion].__dict__, "not_on_or_after": dt.datetime.now(dt.timezone.utc)})
    answer = post(stub, http, recorded_iti41(assertion, stub=stub, patient=NORMAL))
    assert (answer.status_code, "expired" in fault_text(answer)) == (400, True)


def test_an_assertion_for_another_patient_is_refused(stub, http):
    answer = post(stub, http, recorded_iti41(issue(stub, http, RESTRICTED), stub=stub, patient=NORMAL))
    assert (answer.status_code, "for patient" in fault_text(answer)) == (400, True)
    assert stub.documents == {}


def _metadata(request, old: bytes, new: bytes):
    return _soap(request, old, new, -1)


METADATA_RULES = [
    ("wrong hash", lambda r: _soap(r, b'<Slot name="hash"><ValueList><Value>', b'<Slot name="hash"><ValueList><Value>0'),
     "XDSRepositoryMetadataError", "hash"),
    ("wrong size", lambda r: _soap(r, b'<Slot name="size"><ValueList><Value>', b'<Slot name="size"><ValueList><Value>1'),
     "XDSRepositoryMetadataError", "size"),
    ("no PID-5", lambda r: _soap(r, "<Value>PID-5|Eméry^Roman Remo</Value>".encode(), b""),
     "XDSRegistryMetadataError", "PID-5"),
    ("authorInstitution without an OID in XON.10",
     lambda r: _metadata(r, b"&amp;ISO^^^^2.16.756.5.30.1.145</Value>", b"&amp;ISO^^^^</Value>"),
     "XDSRegistryMetadataError", "XON.10"),
    ("unknown class code", lambda r: _soap(r, b'nodeRepresentation="184216000"', b'nodeRepresentation="999999999"'),
     "XDSRegistryMetadataError", "'999999999' with code system '2.16.840.1.113883.6.96' (classCode) not found in the Affinity Domain configuration"),
    ("unknown repository", lambda r: _soap(r, b"2.16.756.5.30.1.177.2.2.1.1.2<", b"2.16.756.5.30.1.177.2.2.1.1.9<"),
     "XDSRepositoryMetadataError", "repositoryUniqueId"),
]


@pytest.mark.parametrize(("mutate", "code", "text"), [rule[1:] for rule in METADATA_RULES],
                         ids=[rule[0] for rule in METADATA_RULES])
def test_metadata_rules_refuse_with_a_registry_error(stub, http, mutate, code, text):
    answer = post(stub, http, mutate(recorded_iti41(issue(stub, http, NORMAL), stub=stub, patient=NORMAL)))
    status, errors = registry_errors(answer)
    assert (answer.status_code, status, [e[0] for e in errors]) == (200, "Failure", [code])
    assert text in errors[0][1]
    assert stub.documents == {}


def test_an_spid_as_patient_id_is_an_unknown_patient(stub, http):
    spid_cx = f"{NORMAL.spid}^^^&amp;2.16.756.5.30.1.127.3.10.3&amp;ISO"
    answer = post(stub, http, recorded_iti41(issue(stub, http, NORMAL), stub=stub, patient=NORMAL, patient_id=spid_cx))
    status, errors = registry_errors(answer)
    assert (status, {e[0] for e in errors}) == ("Failure", {"XDSUnknownPatientId"})
    assert all("is an EPR-SPID" in e[1] for e in errors) and len(errors) == 2  # the submission set's and the entry's
    assert stub.documents == {}


@pytest.mark.parametrize(("code", "scheme", "known"), [
    ("1141000195107", SWISS_EXTENSION, True), ("1141000195107", SNOMED, False), ("17621005", SNOMED, True)])
def test_swiss_extension_codes_carry_their_own_code_system(stub, http, code, scheme, known):
    answer = post(stub, http, recorded_iti41(issue(stub, http, SECRET), stub=stub, patient=SECRET,
                                             confidentiality=(code, scheme)))
    status, errors = registry_errors(answer)
    if known:  # secret is refused by the consent filter for 17621005 only (below the secret level)
        assert [e[0] for e in errors] == ([] if code == "1141000195107" else ["XDSRepositoryError"])
    else:
        assert [e[0] for e in errors] == ["XDSRegistryMetadataError"] and "Affinity Domain" in errors[0][1]


# cara's table (primarysystems-epr.md): publication with normal / restricted / secret per patient level
CONSENT_TABLE = [(NORMAL, "17621005", SNOMED, True), (NORMAL, "263856008", SNOMED, True),
                 (NORMAL, "1141000195107", SWISS_EXTENSION, False), (RESTRICTED, "17621005", SNOMED, False),
                 (RESTRICTED, "263856008", SNOMED, True), (RESTRICTED, "1141000195107", SWISS_EXTENSION, False),
                 (SECRET, "17621005", SNOMED, False), (SECRET, "263856008", SNOMED, False),
                 (SECRET, "1141000195107", SWISS_EXTENSION, True)]


@pytest.mark.parametrize(("patient", "code", "scheme", "accepted"), CONSENT_TABLE)
def test_the_consent_filter_follows_the_provide_level(stub, http, patient, code, scheme, accepted):
    request = recorded_iti41(issue(stub, http, patient), stub=stub, patient=patient, confidentiality=(code, scheme))
    status, errors = registry_errors(post(stub, http, request))
    expected = [] if accepted else [("XDSRepositoryError", "Consent filter applied", request.entry_uuid)]
    assert (status, errors) == ("Success" if accepted else "Failure", expected)
    assert (request.document_unique_id in stub.documents) is accepted


def test_the_former_platforms_consent_answer(stub, http):
    stub.consent_error = "former"
    request = recorded_iti41(issue(stub, http, RESTRICTED), stub=stub, patient=RESTRICTED)
    assert registry_errors(post(stub, http, request)) == (
        "Failure", [("XDSRegistryError", "Unexpected registry error.", "Sense XDS Registry")])


def test_a_provide_level_changed_later_applies_to_the_next_request(stub, http):
    stub.set_provide_level(NORMAL.mpi_pid, "restricted")
    request = recorded_iti41(issue(stub, http, NORMAL), stub=stub, patient=NORMAL)
    assert registry_errors(post(stub, http, request))[1][0][:2] == ("XDSRepositoryError", "Consent filter applied")


def test_uniqueness(stub, http):
    assertion = issue(stub, http, NORMAL)
    first = recorded_iti41(assertion, stub=stub, patient=NORMAL)
    assert registry_errors(post(stub, http, first)) == ("Success", [])
    again = recorded_iti41(assertion, stub=stub, patient=NORMAL, document_unique_id=first.document_unique_id,
                           submission_set_unique_id=first.submission_set_unique_id)
    status, errors = registry_errors(post(stub, http, again))
    assert (status, errors) == ("Failure", [("XDSDuplicateUniqueIdInRegistry", f'The SubmissionSet unique ID '
                                             f'"{first.submission_set_unique_id}" already exists in the registry', "Registry")])
    other_bytes = recorded_iti41(assertion, stub=stub, patient=NORMAL, document=b"other bytes",
                                 document_unique_id=first.document_unique_id)
    status, errors = registry_errors(post(stub, http, other_bytes))
    assert [e[0] for e in errors] == ["XDSNonIdenticalHash"] and first.document_unique_id in errors[0][1]
    same_bytes_other_set = recorded_iti41(assertion, stub=stub, patient=NORMAL,
                                          document_unique_id=first.document_unique_id)
    status, errors = registry_errors(post(stub, http, same_bytes_other_set))
    assert [e[0] for e in errors] == ["XDSDuplicateUniqueIdInRegistry"]
    assert first.document_unique_id in errors[0][1] and first.submission_set_unique_id in errors[0][1]
    assert list(stub.documents) == [first.document_unique_id]


def test_replacement(stub, http):
    assertion = issue(stub, http, NORMAL)
    original = recorded_iti41(assertion, stub=stub, patient=NORMAL)
    post(stub, http, original)
    unknown = recorded_iti41(assertion, stub=stub, patient=NORMAL, replaces="urn:uuid:00000000-0000-4000-8000-000000000000")
    assert [e[0] for e in registry_errors(post(stub, http, unknown))[1]] == ["UnresolvedReferenceException"]
    replacement = recorded_iti41(assertion, stub=stub, patient=NORMAL, document=b"v2", replaces=original.entry_uuid)
    assert registry_errors(post(stub, http, replacement)) == ("Success", [])
    assert (stub.documents[original.document_unique_id].status,
            stub.documents[replacement.document_unique_id].replaces) == ("Deprecated", original.entry_uuid)
    stale = recorded_iti41(assertion, stub=stub, patient=NORMAL, document=b"v3", replaces=original.entry_uuid)
    status, errors = registry_errors(post(stub, http, stale))
    assert [e[0] for e in errors] == ["XDSRegistryMetadataError"] and "Deprecated" in errors[0][1]
    other_patient = recorded_iti41(issue(stub, http, RESTRICTED), stub=stub, patient=RESTRICTED, document=b"x",
                                   confidentiality=("263856008", SNOMED), replaces=replacement.entry_uuid)
    assert [e[0] for e in registry_errors(post(stub, http, other_patient))[1]] == ["XDSPatientIdDoesNotMatch"]


def test_every_request_is_kept_with_its_bytes_and_outcome(stub, http):
    request = recorded_iti41(issue(stub, http, NORMAL), stub=stub, patient=NORMAL)
    post(stub, http, request)
    post(stub, http, request)
    kept = stub.requests_to("iti41")
    assert [(r.status, r.body == request.multipart()[1]) for r in kept] == [(200, True), (200, True)]
    assert kept[0].outcome == f"stored {request.document_unique_id}"
    assert re.match(r"refused: XDSDuplicateUniqueIdInRegistry", kept[1].outcome)
