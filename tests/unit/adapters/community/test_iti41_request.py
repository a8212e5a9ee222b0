"""The ITI-41 request on the wire, byte for byte as the community's platform requires (cara faq):
read back with the standard library's `email` (not the builder's code) and lxml, and validated against
the XSDs in the XOP infoset (each xop:Include replaced by its part)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import pytest
from lxml import etree

from adapters.community import iti41, xua
from adapters.community.authors import ResponsibleProfessional
from adapters.community.ebrim import OutgoingSubmission, Repository
from adapters.community.soap import SOAP12, WSA, WSSE
from adapters.community.transport import HttpAnswer
from unit.adapters.community.community_fixtures import (
    CONTENT,
    MPI_OID,
    MPI_PID,
    PRINCIPAL_GLN,
    SET_ENTRY_UUID,
    SET_UNIQUE_ID,
    document,
    outgoing,
    provide_and_register_schema,
    read_mtom,
    submission_set,
    xds_fixture,
    xop_reconstructed,
)

ENDPOINT = "https://ws.epr.cara.int/Repository/services/RepositoryService"
REPOSITORY = Repository("2.16.756.5.30.1.177.2.2.1.1.2", MPI_OID, "2.16.756.5.30.1.145.20.1")
XOP = "http://www.w3.org/2004/08/xop/include"
XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

# An STS answer as emedo writes it: `xsi` and `s` declared on the envelope, used inside the assertion
# (cara changelog: "if you extract the saml:Assertion by text it will be invalid xml without them").
EMEDO_STYLE_ANSWER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:s="http://www.w3.org/2001/XMLSchema">\n'
    '<env:Body><wst:RequestSecurityTokenResponseCollection xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512">'
    '<wst:RequestSecurityTokenResponse><wst:RequestedSecurityToken>'
    '<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a1" IssueInstant="2025-08-26T20:47:00Z" '
    'Version="2.0">\n  <saml2:Issuer>https://sts.emedo.ch</saml2:Issuer>\n  <saml2:Subject><saml2:NameID '
    'Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">7601000000002</saml2:NameID></saml2:Subject>\n'
    '  <saml2:Conditions NotBefore="2025-08-26T20:47:00Z" NotOnOrAfter="2025-08-26T21:07:00Z"/>\n'
    '  <saml2:AttributeStatement><saml2:Attribute Name="urn:oasis:names:tc:xspa:1.0:subject:subject-id">'
    '<saml2:AttributeValue xsi:type="s:string">Anna Verantwortlich</saml2:AttributeValue></saml2:Attribute>'
    '</saml2:AttributeStatement>\n</saml2:Assertion></wst:RequestedSecurityToken>'
    '</wst:RequestSecurityTokenResponse></wst:RequestSecurityTokenResponseCollection></env:Body></env:Envelope>')


def tcu_sample_assertion() -> xua.IssuedAssertion:
    raw = xds_fixture("epr-by-example/XUA_samples/3_Get_X-User_Assertion_Response-Technical_User.xml").read_bytes()
    return xua.issued_assertion(HttpAnswer(200, "application/soap+xml; charset=utf-8", raw))


def build(*documents, assertion=None) -> iti41.Iti41Request:
    sub = OutgoingSubmission(submission_set(), SET_UNIQUE_ID, SET_ENTRY_UUID, documents or (outgoing(),), MPI_PID,
                             "normal", dt.datetime(2024, 5, 2, 12, 31, tzinfo=dt.UTC),
                             ResponsibleProfessional(PRINCIPAL_GLN, "Verantwortlich"))
    return iti41.build_request(sub, REPOSITORY, endpoint=ENDPOINT, assertion=assertion or tcu_sample_assertion())


def test_the_http_content_type_names_type_start_and_start_info():
    request = build()
    mtom = read_mtom(request.content_type, request.body)
    assert mtom.params["type"] == "application/xop+xml"
    assert mtom.params["start-info"] == "application/soap+xml"
    assert mtom.params["action"] == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    assert mtom.params["start"] == f"<{mtom.root_headers['Content-ID'].strip('<>')}>"
    assert re.fullmatch(r'multipart/related; boundary="uuid:[0-9a-f-]{36}"; type="application/xop\+xml"; '
                        r'start="<root\.message@epr-gateway>"; start-info="application/soap\+xml"; '
                        r'action="urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"', request.content_type)


def test_the_parts_byte_for_byte():
    request = build()
    boundary = read_mtom(request.content_type, request.body).params["boundary"].encode()
    assert request.body.startswith(b"--" + boundary + b"\r\nContent-Type: application/xop+xml; charset=UTF-8; "
                                   b'type="application/soap+xml"\r\nContent-Transfer-Encoding: binary\r\n'
                                   b"Content-ID: <root.message@epr-gateway>\r\n\r\n<soap:Envelope ")
    assert request.body.endswith(b"\r\n--" + boundary + b"--\r\n")
    mtom = read_mtom(request.content_type, request.body)
    assert mtom.root == request.soap
    ((content_id, (kind, headers, data)),) = mtom.parts.items()
    assert (kind, headers["Content-Transfer-Encoding"], data) == ("application/pdf", "binary", CONTENT)
    assert f'href="cid:{content_id}"'.encode() in request.soap


def test_no_line_break_no_comment_and_xop_include_without_whitespace():
    assertion = tcu_sample_assertion()
    assert b"\n" in assertion.xml  # the STS's own formatting, which goes in as issued
    request = build(outgoing(document(title="Austritt\nZeile zwei")))
    assert request.soap.count(assertion.xml) == 1
    ours = request.soap.replace(assertion.xml, b"")
    assert b"\n" not in ours and b"\r" not in ours
    assert b"<!--" not in request.soap and b"<?xml" not in request.soap
    assert re.search(rb'<xds:Document id="urn:uuid:[0-9a-f-]{36}"><xop:Include xmlns:xop="http://www\.w3\.org/2004/08/'
                     rb'xop/include" href="cid:[0-9a-f]{32}@epr-gateway"/></xds:Document>', request.soap)


def test_ws_addressing_and_the_assertion_as_issued():
    assertion = tcu_sample_assertion()
    root = etree.fromstring(build(assertion=assertion).soap)
    header = root.find(f"{{{SOAP12}}}Header")
    action = header.find(f"{{{WSA}}}Action")
    assert (action.text, action.get(f"{{{SOAP12}}}mustUnderstand")) == (iti41.ACTION, "true")
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", header.findtext(f"{{{WSA}}}MessageID"))
    assert header.findtext(f"{{{WSA}}}To") == ENDPOINT
    assert header.findtext(f"{{{WSA}}}ReplyTo/{{{WSA}}}Address") == "http://www.w3.org/2005/08/addressing/anonymous"
    security = header.find(f"{{{WSSE}}}Security")
    (inside,) = security
    assert etree.tostring(inside, method="c14n", exclusive=True) == etree.tostring(
        etree.fromstring(xds_fixture("epr-by-example/XUA_samples/3_Get_X-User_Assertion_Response-Technical_User.xml")
                         .read_bytes()).find(".//{urn:oasis:names:tc:SAML:2.0:assertion}Assertion"),
        method="c14n", exclusive=True)
    assert (security.nsmap["xsi"], security.nsmap["s"]) == (XSI, XS)


def test_prefixes_the_assertion_borrowed_from_the_sts_envelope_are_declared_around_it():
    assertion = xua.issued_assertion(HttpAnswer(200, "application/soap+xml", EMEDO_STYLE_ANSWER.encode()))
    with pytest.raises(etree.XMLSyntaxError):  # on its own, the slice is not even well-formed XML
        etree.fromstring(assertion.xml)
    request = build(assertion=assertion)
    assert request.soap.count(assertion.xml) == 1
    value = etree.fromstring(request.soap).find(".//{urn:oasis:names:tc:SAML:2.0:assertion}AttributeValue")
    prefix, _, local = value.get(f"{{{XSI}}}type").partition(":")
    assert (value.nsmap[prefix], local) == (XS, "string")  # s:string still means xs:string


def test_a_borrowed_prefix_that_clashes_with_wsse_moves_our_prefix():
    answer = EMEDO_STYLE_ANSWER.replace('xmlns:s="http://www.w3.org/2001/XMLSchema"',
                                        'xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:wsse="urn:other"')
    assertion = xua.issued_assertion(HttpAnswer(200, "application/soap+xml", answer.encode()))
    root = etree.fromstring(build(assertion=assertion).soap)
    security = root.find(f"{{{SOAP12}}}Header/{{{WSSE}}}Security")
    assert security.prefix == "wssex" and security.nsmap["wsse"] == "urn:other"


def test_the_body_is_valid_against_the_xsds_in_its_xop_infoset():
    second = outgoing(document(unique_id="urn:oid:2.25.7", content=b"second"),
                      entry_uuid="urn:uuid:11111111-2222-4333-8444-555555555555")
    request = build(outgoing(), second)
    mtom = read_mtom(request.content_type, request.body)
    body = etree.fromstring(mtom.root).find(f"{{{SOAP12}}}Body")[0]
    schema = provide_and_register_schema()
    assert schema.validate(xop_reconstructed(body, mtom.parts)), schema.error_log
    assert len(mtom.parts) == 2
    broken = xop_reconstructed(body, mtom.parts)  # the validator is not vacuous: an id-less object fails
    next(broken.iter("{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}ExtrinsicObject")).attrib.pop("id")
    assert not schema.validate(broken)


def test_the_recorded_kit_request_passes_the_same_validation():
    """The community's own recorded ITI-41 (its {{placeholders}} filled) against the same schemas."""
    raw = xds_fixture("cara-ikit/requests/iti-41-zeller.http").read_bytes()
    start = raw.index(b"<ns4:ProvideAndRegisterDocumentSetRequest")
    end = raw.index(b"</ns4:ProvideAndRegisterDocumentSetRequest>") + len(b"</ns4:ProvideAndRegisterDocumentSetRequest>")
    body = etree.fromstring(re.sub(rb"\{\{[^}]*\}\}", b"0f0e0d0c-0b0a-4908-8706-050403020100", raw[start:end]))
    parts = {include.get("href")[4:]: ("application/pdf", {}, b"%PDF") for include in body.iter(f"{{{XOP}}}Include")}
    assert provide_and_register_schema().validate(xop_reconstructed(body, parts))


def test_each_attempt_is_a_new_message_of_the_same_submission():
    first, second = build(), build()
    assert first.message_id != second.message_id
    strip = lambda r: re.sub(rb"urn:uuid:[0-9a-f-]{36}</MessageID>|cid:[0-9a-f]{32}@", b"", r.soap)  # noqa: E731
    assert strip(first) == strip(second)  # every id of the metadata is the same
    assert replace(first.submission.documents[0], content_id="") == outgoing()
