"""The platform's answers: SOAP 1.2 faults, RegistryResponse (as `samples/ITI-41_response_raw.xml`),
multipart (MTOM) or plain, and the refusals the handlers raise to produce them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
XOP = "http://www.w3.org/2004/08/xop/include"
XDS_B = "urn:ihe:iti:xds-b:2007"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
HL7 = "urn:hl7-org:v3"
WST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
ROOT_CONTENT_ID = "<root.message@cxf.apache.org>"


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RegistryError:
    code: str
    context: str
    location: str = ""
    severity: str = ERROR


@dataclass
class Refusal(Exception):
    """What a handler answers instead of going on; `reason` is kept with the recorded request."""
    answer: Answer
    reason: str
    errors: list[RegistryError] = field(default_factory=list)

    def __str__(self) -> str:
        return self.reason


def soap_fault(reason: str, *, code: str = "Receiver", subcode: tuple[str, str] | None = None,
               status: int | None = None) -> Refusal:
    """A SOAP 1.2 fault; HTTP 400 for Sender faults and 500 otherwise (SOAP 1.2 HTTP binding)."""
    sub = ""
    if subcode is not None:
        namespace, local = subcode
        sub = f'<soap:Subcode><soap:Value xmlns:sc="{namespace}">sc:{local}</soap:Value></soap:Subcode>'
    body = (f'<soap:Envelope xmlns:soap="{SOAP12}"><soap:Body><soap:Fault><soap:Code>'
            f'<soap:Value>soap:{code}</soap:Value>{sub}</soap:Code><soap:Reason>'
            f'<soap:Text xml:lang="en">{escape(reason)}</soap:Text></soap:Reason></soap:Fault></soap:Body>'
            f'</soap:Envelope>').encode()
    http_status = status if status is not None else (400 if code == "Sender" else 500)
    return Refusal(Answer(http_status, "application/soap+xml; charset=UTF-8", body), reason)


def registry_response_envelope(errors: list[RegistryError], *, relates_to: str) -> bytes:
    status = FAILURE if errors else SUCCESS
    error_list = ""
    if errors:
        error_list = "<ns2:RegistryErrorList>" + "".join(
            f"<ns2:RegistryError codeContext={_attr(e.context)} errorCode={_attr(e.code)} "
            f"severity={_attr(e.severity)} location={_attr(e.location)}/>" for e in errors
        ) + "</ns2:RegistryErrorList>"
    closing = f">{error_list}</ns2:RegistryResponse>" if errors else "/>"
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        f'<soap:Envelope xmlns:soap="{SOAP12}"><soap:Header>'
        f'<Action xmlns="{WSA}" soap:mustUnderstand="true">urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse</Action>'
        f'<MessageID xmlns="{WSA}">urn:uuid:{uuid.uuid4()}</MessageID>'
        f'<To xmlns="{WSA}">{ANONYMOUS}</To><RelatesTo xmlns="{WSA}">{escape(relates_to)}</RelatesTo>'
        f'</soap:Header><soap:Body><ns2:RegistryResponse xmlns="{RIM}" xmlns:ns2="{RS}" xmlns:ns3="{LCM}" '
        f'xmlns:ns4="{XDS_B}" status="{status}"{closing}</soap:Body></soap:Envelope>'
    ).encode()


def mtom_answer(envelope: bytes, status: int = 200) -> Answer:
    """A multipart/related answer laid out as the recorded `ITI-41_response_raw.xml`."""
    boundary = f"uuid:{uuid.uuid4()}"
    content_type = (f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; '
                    f'start="{ROOT_CONTENT_ID}"; start-info="application/soap+xml"')
    body = (f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
            f"Content-Transfer-Encoding: binary\r\nContent-ID: {ROOT_CONTENT_ID}\r\n\r\n").encode()
    return Answer(status, content_type, body + envelope + f"\r\n--{boundary}--".encode())


def plain_answer(envelope: bytes, status: int = 200) -> Answer:
    return Answer(status, "application/soap+xml; charset=UTF-8", envelope)


def registry_failure(errors: list[RegistryError], *, relates_to: str, multipart: bool) -> Refusal:
    envelope = registry_response_envelope(errors, relates_to=relates_to)
    answer = mtom_answer(envelope) if multipart else plain_answer(envelope)
    return Refusal(answer, "; ".join(f"{e.code}: {e.context}" for e in errors), list(errors))


def _attr(value: str) -> str:
    return quoteattr(value, {'"': "&quot;"})


def parse_envelope(body: bytes, parser: etree.XMLParser) -> tuple[etree._Element, etree._Element]:
    """The SOAP 1.2 envelope and its Header, or the Sender fault a SOAP stack answers."""
    try:
        envelope = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as error:
        raise soap_fault(f"the request is not well-formed XML: {error}", code="Sender") from None
    header = envelope.find(f"{{{SOAP12}}}Header")
    if envelope.tag != f"{{{SOAP12}}}Envelope" or header is None:
        raise soap_fault("not a SOAP 1.2 envelope with a Header", code="Sender", subcode=(SOAP12, "VersionMismatch"))
    return envelope, header
