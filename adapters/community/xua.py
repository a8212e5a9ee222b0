"""ITI-40 as the Swiss EPR uses it: the X-User Assertion for one patient, from the community's STS.

The request (WS-Trust 1.3 `RequestSecurityToken`, SOAP 1.2) carries the technical user's own signed
assertion in `wsse:Security` (`tcu_assertion.py`) and the claims of Annex 5 amendment 2, as the TCU
sample (`XUA_samples/3_*Technical_User*`) and the community's kit write them: the patient
(`resource-id`, the SPID in CX form), purpose of use AUTO, role TCU (CE with code system and
displayName: a missing displayName makes the platform's later token validation fail, cara changelog),
and the responsible professional (`principal-id` GLN, `principal-name`).

The answer's assertion is kept as the exact bytes received: they are sliced out of the raw answer
(expat reports where the element starts and ends), never re-serialised, because the assertion is
signed and the repository compares it with what its STS issued. What the assertion relied on from
outside itself — namespace prefixes declared on the answer's envelope (emedo declares `xsi` and `s`
there) — is kept beside it, to be declared on `wsse:Security` where it is used.

An STS fault is a transport-class failure (`StsFailure`, the STS's text kept): the outbox retries.
"""

from __future__ import annotations

import threading
import xml.parsers.expat
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from lxml import etree

from adapters.cara.dates import InvalidDate, parse_fhir
from adapters.community import mtom, soap
from adapters.community.tcu_assertion import SAML, XS, XSI
from adapters.community.transport import HttpAnswer

WST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
WSP = "http://schemas.xmlsoap.org/ws/2004/09/policy"
HL7 = "urn:hl7-org:v3"
ACTION = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue"
ISSUE = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
SAML2_TOKEN = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"
DIALECT = "http://www.bag.admin.ch/epr/2017/annex/5/amendment/2"
SPID_OID = "2.16.756.5.30.1.127.3.10.3"
ROLE = ("TCU", "2.16.756.5.30.1.127.3.10.6", "eHealth Suisse EPR Akteure", "Technical user")
PURPOSE = ("AUTO", "2.16.756.5.30.1.127.3.10.5", "eHealth Suisse Verwendungszweck", "Automatic Upload")
SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
ROLE_ATTRIBUTE = "urn:oasis:names:tc:xacml:2.0:subject:role"
PURPOSE_ATTRIBUTE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
RESOURCE_ID = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
_ASSERTION = f"{SAML}}}Assertion"  # expat's "uri}local" names
_TOKEN_HOLDER = f"{WST}}}RequestedSecurityToken"


class StsFailure(Exception):
    """The STS gave no assertion (a fault, an answer without one): retry later; `text` says why."""

    audit: tuple = ()  # the audit message of the failed exchange (set by the caller that made it)

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class IssuedAssertion:
    """An X-User Assertion as the STS issued it, and what the audit messages name of it."""

    xml: bytes  # the exact bytes of the saml2:Assertion element in the STS's answer
    namespaces: dict[str | None, str]  # what was in scope around it there (declared on wsse:Security)
    not_on_or_after: datetime
    issuer: str
    subject: str  # Subject/NameID (the responsible professional's GLN)
    subject_alias: str | None  # NameID/@SPProvidedID
    subject_name: str | None  # the subject-id attribute
    role: tuple[str, str] | None  # (code, displayName) of the role attribute
    purpose: tuple[str, str] | None  # (code, displayName) of the purpose of use
    delegate: str | None  # SubjectConfirmation/NameID: the technical user acting


def spid_cx(spid: str) -> str:
    return f"{spid}^^^&{SPID_OID}&ISO"


def request_security_token(*, spid: str, principal_gln: str, principal_name: str, applies_to: str) -> bytes:
    """The RST body (one line)."""
    rst = etree.Element(f"{{{WST}}}RequestSecurityToken", nsmap={"wst": WST})
    etree.SubElement(rst, f"{{{WST}}}RequestType").text = ISSUE
    reference = etree.SubElement(etree.SubElement(rst, f"{{{WSP}}}AppliesTo", nsmap={"wsp": WSP}),
                                 f"{{{soap.WSA}}}EndpointReference", nsmap={"wsa": soap.WSA})
    etree.SubElement(reference, f"{{{soap.WSA}}}Address").text = applies_to
    etree.SubElement(rst, f"{{{WST}}}TokenType").text = SAML2_TOKEN
    claims = etree.SubElement(rst, f"{{{WST}}}Claims", Dialect=DIALECT)
    _coded_claim(claims, ROLE_ATTRIBUTE, "Role", ROLE, name_format="urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified")
    _coded_claim(claims, PURPOSE_ATTRIBUTE, "PurposeOfUse", PURPOSE)
    _text_claim(claims, RESOURCE_ID, spid_cx(spid), "xs:token")
    _text_claim(claims, "urn:e-health-suisse:principal-id", principal_gln, "xs:token")
    _text_claim(claims, "urn:e-health-suisse:principal-name", principal_name, "xs:string")
    return soap.serialise(rst)


def _coded_claim(claims, name: str, tag: str, coded: tuple[str, str, str, str], name_format: str | None = None):
    attribute = etree.SubElement(claims, f"{{{SAML}}}Attribute", nsmap={"saml2": SAML}, Name=name)
    if name_format:
        attribute.set("NameFormat", name_format)
    value = etree.SubElement(attribute, f"{{{SAML}}}AttributeValue", nsmap={"xs": XS, "xsi": XSI})
    value.set(f"{{{XSI}}}type", "xs:anyType")
    code, system, system_name, display = coded
    element = etree.SubElement(value, f"{{{HL7}}}{tag}", nsmap={None: HL7}, code=code, codeSystem=system,
                               codeSystemName=system_name, displayName=display)
    element.set(f"{{{XSI}}}type", "CE")


def _text_claim(claims, name: str, text: str, xsi_type: str) -> None:
    attribute = etree.SubElement(claims, f"{{{SAML}}}Attribute", nsmap={"saml2": SAML}, Name=name)
    value = etree.SubElement(attribute, f"{{{SAML}}}AttributeValue", nsmap={"xs": XS, "xsi": XSI})
    value.set(f"{{{XSI}}}type", xsi_type)
    value.text = text


def sts_request(*, endpoint: str, tcu_assertion: bytes, body: bytes, message: str) -> bytes:
    header = (soap.addressing_headers(action=ACTION, to=endpoint, message=message)
              + soap.security_header(tcu_assertion, {}))
    return soap.envelope(header=header, body=body)


def issued_assertion(answer: HttpAnswer) -> IssuedAssertion:
    """The assertion of an STS answer, or StsFailure naming why there is none."""
    try:
        data = mtom.soap_part(answer.content_type, answer.body)
        root = soap.parse(data)
        content = soap.body_of(root)
    except (mtom.NotSoap, soap.SoapAnswerUnreadable) as exc:
        raise StsFailure(f"STS answered HTTP {answer.status} without a readable SOAP message ({exc})") from None
    fault = soap.fault_of(content)
    if fault is not None:
        raise StsFailure(f"STS answered HTTP {answer.status}: {fault}")
    holders = [h for h in content.iter(f"{{{WST}}}RequestedSecurityToken")]
    element = holders[0].find(f"{{{SAML}}}Assertion") if holders else None
    if element is None:
        raise StsFailure(f"STS answered HTTP {answer.status} without a saml2:Assertion in RequestedSecurityToken")
    encoding = (root.getroottree().docinfo.encoding or "UTF-8").upper()
    if encoding not in ("UTF-8", "UTF8", "US-ASCII", "ASCII"):
        raise StsFailure(f"the STS answer is in {encoding}: its assertion cannot go as it is into a UTF-8 message")
    start, end = _element_span(data)
    namespaces: dict[str | None, str] = {"xsi": XSI, "s": XS}  # the kit's advice, when nothing says otherwise
    namespaces.update(holders[0].nsmap)
    return _describe(element, data[start:end], namespaces)


def _element_span(data: bytes) -> tuple[int, int]:
    """Byte offsets of the first saml2:Assertion directly inside RequestedSecurityToken."""
    parser = xml.parsers.expat.ParserCreate(namespace_separator="}")
    stack: list[str] = []
    span: list[int] = []

    def start(name, _attributes):
        if not span and name == _ASSERTION and stack and stack[-1] == _TOKEN_HOLDER:
            span.append(parser.CurrentByteIndex)
            span.append(len(stack) + 1)
        stack.append(name)

    def end(name):
        if len(span) == 2 and len(stack) == span[1]:
            span.append(parser.CurrentByteIndex)
        stack.pop()

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.Parse(data, True)
    if len(span) != 3:
        raise StsFailure("the STS answer's assertion could not be located in its bytes")
    return span[0], data.index(b">", span[2]) + 1


def _describe(element: etree._Element, xml_bytes: bytes, namespaces: dict[str | None, str]) -> IssuedAssertion:
    def attribute(name: str) -> etree._Element | None:
        return element.find(f"{{{SAML}}}AttributeStatement/{{{SAML}}}Attribute[@Name='{name}']/{{{SAML}}}AttributeValue")

    def coded(name: str) -> tuple[str, str] | None:
        value = attribute(name)
        inner = next((c for c in value if isinstance(c.tag, str)), None) if value is not None else None
        return (inner.get("code", ""), inner.get("displayName", "")) if inner is not None else None

    name_id = element.find(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    expiry = element.find(f"{{{SAML}}}Conditions")
    if name_id is None or expiry is None or not expiry.get("NotOnOrAfter"):
        raise StsFailure("the STS's assertion has no Subject/NameID or no Conditions/@NotOnOrAfter")
    try:  # xsd:dateTime with its zone, as a FHIR instant is: read by the gateway's one date parser
        not_after = parse_fhir(expiry.get("NotOnOrAfter"), kind="instant").start.replace(tzinfo=UTC)
    except InvalidDate:
        raise StsFailure(f"the STS's assertion has an unreadable NotOnOrAfter {expiry.get('NotOnOrAfter')!r}") from None
    subject_name = attribute(SUBJECT_ID)
    delegate = element.findtext(f"{{{SAML}}}Subject/{{{SAML}}}SubjectConfirmation/{{{SAML}}}NameID")
    return IssuedAssertion(
        xml=xml_bytes, namespaces=namespaces, not_on_or_after=not_after,
        issuer=(element.findtext(f"{{{SAML}}}Issuer") or "").strip(), subject=(name_id.text or "").strip(),
        subject_alias=name_id.get("SPProvidedID"),
        subject_name=(subject_name.text or "").strip() if subject_name is not None else None,
        role=coded(ROLE_ATTRIBUTE), purpose=coded(PURPOSE_ATTRIBUTE),
        delegate=delegate.strip() if delegate else None)


@dataclass
class AssertionCache:
    """X-User Assertions per patient, each until shortly before its NotOnOrAfter (bounded, LRU).

    "Shortly before": `renew_before`, or half the time left when the STS issues shorter-lived ones,
    so an assertion is never sent in its last moments (the repository may be a little ahead)."""

    renew_before: timedelta = timedelta(seconds=60)
    capacity: int = 10_000
    _entries: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, spid: str, now: datetime) -> IssuedAssertion | None:
        with self._lock:
            held = self._entries.get(spid)
            if held is None:
                return None
            assertion, use_until = held
            if now >= use_until:
                del self._entries[spid]
                return None
            self._entries.move_to_end(spid)
            return assertion

    def put(self, spid: str, assertion: IssuedAssertion, now: datetime) -> None:
        left = assertion.not_on_or_after - now
        if left <= timedelta(0):
            return
        with self._lock:
            self._entries[spid] = (assertion, assertion.not_on_or_after - min(self.renew_before, left / 2))
            self._entries.move_to_end(spid)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def drop(self, spid: str) -> None:
        with self._lock:
            self._entries.pop(spid, None)


__all__ = ["AssertionCache", "IssuedAssertion", "StsFailure", "issued_assertion", "request_security_token",
           "spid_cx", "sts_request"]
