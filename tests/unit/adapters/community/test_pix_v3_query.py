"""ITI-45: the query as the community's kit records it, the recorded answer read for the MPI-PID, and
every way of saying "not known" or "refused" — never an id in another assigning authority."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from lxml import etree

from adapters.community import pix_v3, soap
from adapters.community.transport import HttpAnswer
from unit.adapters.community.community_fixtures import xds_fixture

HL7 = "urn:hl7-org:v3"
RECORDED_MPI = "1.3.6.1.4.1.21367.2017.2.5.93"  # the recorded answer's MPI domain
SPID = "761337612097656117"


def built(**changes) -> pix_v3.PixQuery:
    values = dict(spid=SPID, mpi_oid="2.16.756.5.30.1.177.2.2.1.1", sender_oid="2.16.756.5.30.1.196.3.2.1",
                  receiver_oid="2.16.756.5.30.1.177.2.2.1.1.3", now=dt.datetime(2022, 9, 22, 5, 33, 22))
    values.update(changes)
    return pix_v3.query(**values)


def paths(element, prefix="") -> list[str]:
    found = []
    for child in element:
        if isinstance(child.tag, str):
            path = f"{prefix}/{etree.QName(child).localname}"
            found.append(path)
            found.extend(paths(child, path))
    return found


def test_the_query_is_shaped_as_the_kits_recorded_one():
    recorded = xds_fixture("cara-ikit/requests/iti-45-weinmann-eprspid.http").read_bytes()
    start = recorded.index(b"<PRPA_IN201309UV02")
    end = recorded.index(b"</PRPA_IN201309UV02>") + len(b"</PRPA_IN201309UV02>")
    sample = etree.fromstring(recorded[start:end])
    ours = etree.fromstring(built().body)
    assert paths(ours) == paths(sample)
    values = lambda e, path, attribute: [x.get(attribute) for x in e.iterfind(path, {"v": HL7})]  # noqa: E731
    for path, attribute in [("v:interactionId", "extension"), ("v:interactionId", "root"),
                            ("v:controlActProcess/v:code", "code"), ("v:controlActProcess/v:code", "codeSystem"),
                            ("v:receiver/v:device/v:id", "root"), ("v:sender/v:device/v:id", "root"),
                            (".//v:dataSource/v:value", "root"), (".//v:patientIdentifier/v:value", "root"),
                            (".//v:patientIdentifier/v:value", "extension"), ("v:acceptAckCode", "code")]:
        assert values(ours, path, attribute) == values(sample, path, attribute), path
    assert b"\n" not in built().body


def test_the_soap_request_and_what_the_audit_message_keeps():
    query = built()
    request = etree.fromstring(pix_v3.request(endpoint="https://pix.cara/PIXPDQ", pix_query=query,
                                              message="urn:uuid:177ba6dc-fc2b-460f-a563-af4d3fc83d55"))
    header = request.find(f"{{{soap.SOAP12}}}Header")
    action = header.find(f"{{{soap.WSA}}}Action")
    assert (action.text, action.get(f"{{{soap.SOAP12}}}mustUnderstand")) == ("urn:hl7-org:v3:PRPA_IN201309UV02", "true")
    assert header.findtext(f"{{{soap.WSA}}}To") == "https://pix.cara/PIXPDQ"
    assert etree.fromstring(query.query).tag == f"{{{HL7}}}queryByParameter"
    assert re.fullmatch(r"2\.16\.756\.5\.30\.1\.196\.3\.2\.1\^[0-9a-f]{32}", query.message_id)


def recorded_answer(*replacements: tuple[bytes, bytes]) -> HttpAnswer:
    body = xds_fixture("epr-by-example/samples/ITI-45_response_raw.xml").read_bytes()
    for old, new in replacements:
        assert old in body, old
        body = body.replace(old, new)
    return HttpAnswer(200, "application/soap+xml; charset=UTF-8", body)


def test_the_recorded_answer_gives_the_mpi_pid():
    assert pix_v3.answer(recorded_answer(), mpi_oid=RECORDED_MPI) == pix_v3.MpiPid(
        "7f2e05e6-673e-44b6-8b76-e17ac58ea80f", RECORDED_MPI)


def test_never_an_id_in_another_assigning_authority():
    result = pix_v3.answer(recorded_answer(), mpi_oid="2.16.756.5.30.1.177.2.2.1.1")
    assert result == pix_v3.PatientUnknown("OK: the answer holds no MPI-PID in 2.16.756.5.30.1.177.2.2.1.1")


SUBJECT = re.compile(rb"<ns1:subject typeCode=\"SUBJ\">.*</ns1:subject>", re.S)


def without_subject(answer: HttpAnswer) -> HttpAnswer:
    return HttpAnswer(answer.status, answer.content_type, SUBJECT.sub(b"", answer.body))


def acknowledged(code: bytes, query_code: bytes, detail: bytes = b"") -> HttpAnswer:
    return without_subject(recorded_answer(
        (b'<ns1:typeCode code="AA"/>', b'<ns1:typeCode code="' + code + b'"/>'),
        (b"</ns1:targetMessage>", b"</ns1:targetMessage>" + detail),
        (b'<ns1:queryResponseCode code="OK"/>', b'<ns1:queryResponseCode code="' + query_code + b'"/>')))


def detail(text: bytes, location: bytes) -> bytes:
    return (b'<ns1:acknowledgementDetail typeCode="E"><ns1:code code="204" codeSystem="2.16.840.1.113883.12.357"/>'
            b"<ns1:text>" + text + b"</ns1:text><ns1:location>" + location + b"</ns1:location></ns1:acknowledgementDetail>")


@pytest.mark.parametrize(("answer", "reason"), [
    (acknowledged(b"AA", b"NF"), "NF: no data found"),
    (acknowledged(b"AE", b"AE", detail(b"Unknown key identifier",
                                       b"/controlActProcess/queryByParameter/parameterList/patientIdentifier")),
     "AE: 204 Unknown key identifier /controlActProcess/queryByParameter/parameterList/patientIdentifier"),
    (acknowledged(b"AE", b"AE"), "AE: application error"),
])
def test_a_patient_the_community_does_not_know(answer, reason):
    assert pix_v3.answer(answer, mpi_oid=RECORDED_MPI) == pix_v3.PatientUnknown(reason)


@pytest.mark.parametrize(("answer", "code", "text"), [
    (acknowledged(b"AE", b"AE", detail(b"Unknown domain", b"/controlActProcess/queryByParameter/parameterList/"
                                                          b"dataSource")),
     "AE", "204 Unknown domain /controlActProcess/queryByParameter/parameterList/dataSource"),
    (acknowledged(b"AR", b"AE"), "AR", "the query was refused"),
    (acknowledged(b"AA", b"QE"), "QE", "the query was refused"),
    (recorded_answer((b'extension="761337610435209810" root="2.16.756.5.30.1.127.3.10.3"',
                      b'extension="other-pid" root="1.3.6.1.4.1.21367.2017.2.5.93"')),
     "OK", "more than one MPI-PID in 1.3.6.1.4.1.21367.2017.2.5.93 for one SPID"),
    (recorded_answer((b'extension="7f2e05e6-673e-44b6-8b76-e17ac58ea80f"', b'extension="7f2e 05e6"')),
     "OK", "the MPI-PID in the answer is not a printable identifier"),
])
def test_a_query_the_pix_manager_refuses(answer, code, text):
    with pytest.raises(pix_v3.PixRefused) as caught:
        pix_v3.answer(answer, mpi_oid=RECORDED_MPI)
    assert (caught.value.code, caught.value.text) == (code, text)


@pytest.mark.parametrize(("answer", "text"), [
    (HttpAnswer(500, "application/soap+xml", b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
                b"<s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason><s:Text>MPI down</s:Text>"
                b"</s:Reason></s:Fault></s:Body></s:Envelope>"),
     "PIX manager answered HTTP 500: SOAP fault s:Receiver: MPI down"),
    (HttpAnswer(200, "text/plain", b"ok"), "PIX manager answered HTTP 200 without a readable SOAP message (the "
                                           "answer's content type is text/plain, not SOAP)"),
])
def test_no_usable_answer_is_a_failure_to_retry(answer, text):
    with pytest.raises(pix_v3.PixFailure) as caught:
        pix_v3.answer(answer, mpi_oid=RECORDED_MPI)
    assert caught.value.text == text
