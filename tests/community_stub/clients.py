"""Test clients of the stub, built with plain string templates from the recorded messages (never with
the gateway's builder): the technical user's assertion and the STS request (cara's recorded
`sts-ikit.http` / `XUA_samples/3_*`), the ITI-41 request (`samples/ITI-41_request_raw.xml`, laid
out as the platform requires and completed with what it insists on), the PIX V3 query
(`cara-ikit/requests/iti-45-*.http`), and syslog frames for the audit repository."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import socket
import ssl
import uuid
from dataclasses import dataclass

import httpx
from lxml import etree

from .fixtures import sample
from .keys import load_certificate
from .soap import SAML2
from .stub import CommunityStub, Patient
from .xmldsig import sign_enveloped

WSSE_SECURITY_OPEN = ('<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-'
                      'secext-1.0.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                      'xmlns:s="http://www.w3.org/2001/XMLSchema">')
INSTITUTION = "Hôpital du Valais^^^^^&amp;2.16.756.5.30.1.145&amp;ISO^^^^2.16.756.5.30.1.145"


def instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def technical_user_assertion(stub: CommunityStub, *, not_before: dt.datetime | None = None,
                             lifetime: dt.timedelta = dt.timedelta(minutes=5), oid: str | None = None,
                             key=None, certificate=None) -> str:
    """The technical user's own SAML assertion as cara's recorded STS request carries it, signed."""
    oid = oid or stub.technical_user_oid
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    text = (f'<saml2:Assertion xmlns:saml2="{SAML2}" xmlns:xs="http://www.w3.org/2001/XMLSchema" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="Assertion_{uuid.uuid4()}" '
            f'IssueInstant="{instant(start)}" Version="2.0"><saml2:Issuer>urn:oid:{oid}</saml2:Issuer><saml2:Subject>'
            f'<saml2:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">{oid}</saml2:NameID>'
            f'<saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"/></saml2:Subject>'
            f'<saml2:Conditions NotBefore="{instant(start)}" NotOnOrAfter="{instant(start + lifetime)}"/>'
            f'<saml2:AuthnStatement AuthnInstant="{instant(start)}" SessionNotOnOrAfter="{instant(start + lifetime)}">'
            f'<saml2:AuthnContext><saml2:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified'
            f'</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement></saml2:Assertion>')
    element = etree.fromstring(text)
    sign_enveloped(element, key=key or stub.keys.technical_user_private_key(),
                   certificate=certificate or load_certificate(stub.keys.technical_user_cert),
                   after=element.find(f"{{{SAML2}}}Issuer"))
    return etree.tostring(element).decode()


def sts_request(assertion: str, *, spid: str, gln: str, name: str, role: str = "TCU", purpose: str = "AUTO",
                display: bool = True) -> bytes:
    """cara's recorded ITI-40 request for a technical user (`sts-ikit.http`), its claims as Annex 5."""
    role_display = ' displayName="Technical User"' if display else ""
    purpose_display = ' displayName="Automatic Upload"' if display else ""
    value = ('<saml2:Attribute xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" Name="{0}"><saml2:AttributeValue '
             'xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"{1}>'
             '{2}</saml2:AttributeValue></saml2:Attribute>')
    claims = "".join([
        value.format("urn:oasis:names:tc:xacml:2.0:resource:resource-id", ' xsi:type="xs:string"',
                     f"{spid}^^^&amp;2.16.756.5.30.1.127.3.10.3&amp;ISO"),
        value.format("urn:oasis:names:tc:xspa:1.0:subject:purposeofuse", ' xsi:type="xs:anyType"',
                     f'<PurposeOfUse xmlns="urn:hl7-org:v3" code="{purpose}" codeSystem="2.16.756.5.30.1.127.3.10.5" '
                     f'codeSystemName="eHealth Suisse Verwendungszweck"{purpose_display} xsi:type="CE"/>'),
        value.format("urn:oasis:names:tc:xacml:2.0:subject:role", "",
                     f'<Role xmlns="urn:hl7-org:v3" code="{role}" codeSystem="2.16.756.5.30.1.127.3.10.6" '
                     f'codeSystemName="eHealth Suisse EPR Akteure"{role_display} xsi:type="CE"/>'),
        value.format("urn:e-health-suisse:principal-id", ' xsi:type="xs:string"', gln),
        value.format("urn:e-health-suisse:principal-name", ' xsi:type="xs:string"', name),
    ])
    return (
        '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Header xmlns:wsa="http://www.w3.org/2005/08/addressing">'
        '<wsa:Action>http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue</wsa:Action>'
        f'<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID><wsse:Security '
        f'xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">{assertion}'
        '</wsse:Security></env:Header><env:Body><wst:RequestSecurityToken xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512">'
        '<wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType>'
        '<wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><wsa:EndpointReference '
        'xmlns:wsa="http://www.w3.org/2005/08/addressing"><wsa:Address>https://community.test/xds</wsa:Address>'
        '</wsa:EndpointReference></wsp:AppliesTo>'
        '<wst:TokenType>http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0</wst:TokenType>'
        f'<wst:Claims Dialect="http://www.bag.admin.ch/epr/2017/annex/5/amendment/2">{claims}</wst:Claims>'
        '</wst:RequestSecurityToken></env:Body></env:Envelope>').encode()


def issued_assertion_bytes(sts_answer: bytes) -> bytes:
    """The assertion out of the STS's answer, byte for byte (a text cut, never a re-serialisation)."""
    start = re.search(rb"<saml2:Assertion[\s>]", sts_answer).start()
    end = sts_answer.index(b"</saml2:Assertion>") + len(b"</saml2:Assertion>")
    return sts_answer[start:end]


def compact(xml: str) -> str:
    """The recorded, pretty-printed envelope laid out as the platform needs it: no line breaks."""
    within_tags = re.sub(r"<[^>]+>", lambda tag: re.sub(r"\s+", " ", tag.group(0)), xml)
    return re.sub(r">\s+<", "><", within_tags).strip()


@dataclass
class Iti41:
    """One ITI-41 request's parts, to send as built or to mutate before `multipart()`."""
    soap: bytes
    document: bytes
    document_unique_id: str
    submission_set_unique_id: str
    entry_uuid: str
    boundary: str = ""
    content_id: str = ""
    start_info: bool = True

    def multipart(self) -> tuple[str, bytes]:
        """(Content-Type, body) laid out as `samples/ITI-41_request_raw.xml`, with cara's start-info."""
        header = (f'multipart/related; boundary="{self.boundary}"; type="application/xop+xml"; '
                  f'start="<root.message@cxf.apache.org>"')
        if self.start_info:
            header += '; start-info="application/soap+xml"'
        body = (f"--{self.boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; "
                f"type=\"application/soap+xml\"\r\nContent-Transfer-Encoding: binary\r\n"
                f"Content-ID: <root.message@cxf.apache.org>\r\n\r\n").encode() + self.soap
        body += (f"\r\n--{self.boundary}\r\nContent-Type: application/fhir+json\r\nContent-Transfer-Encoding: binary\r\n"
                 f"Content-ID: <{self.content_id}>\r\n\r\n").encode() + self.document
        return header + '; action="urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"', body + f"\r\n--{self.boundary}--".encode()


def recorded_iti41(assertion: bytes, *, stub: CommunityStub, patient: Patient, document: bytes | None = None,
                   confidentiality: tuple[str, str] = ("17621005", "2.16.840.1.113883.6.96"),
                   document_unique_id: str | None = None, submission_set_unique_id: str | None = None,
                   replaces: str | None = None, patient_id: str | None = None) -> Iti41:
    """The recorded ITI-41 request with the stub's assertion, this patient and fresh ids."""
    raw = sample("ITI-41_request_raw.xml").decode("utf-8")
    envelope = raw[raw.index("<soap:Envelope"):raw.index("</soap:Envelope>") + len("</soap:Envelope>")]
    recorded_part = raw.split("Content-ID: <8ba22b9e-fcff-49d8-945e-438a11f25b0f-1@urn:ihe:iti:xds-b:2007>\n\n", 1)[1]
    content = document if document is not None else recorded_part.rsplit("\n--uuid:", 1)[0].encode()
    entry, package = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    doc_uid = document_unique_id or f"2.25.{uuid.uuid4().int}"
    set_uid = submission_set_unique_id or f"2.25.{uuid.uuid4().int}"
    mpi_cx = patient_id or f"{patient.mpi_pid}^^^&amp;{stub.registry.assigning_authority}&amp;ISO"
    content_id = f"{uuid.uuid4()}-1@urn:ihe:iti:xds-b:2007"
    text = compact(envelope)
    security = re.search(r"<wsse:Security>.*</wsse:Security>", text, re.S)
    text = text[:security.start()] + "\0SECURITY\0" + text[security.end():]
    slot = '<Slot name="{0}"><ValueList><Value>{1}</Value></ValueList></Slot>'
    extra_slots = "".join([
        slot.format("hash", hashlib.sha1(content).hexdigest()),
        slot.format("repositoryUniqueId", stub.registry.repository_unique_id),
        slot.format("size", len(content)),
        f'<Slot name="sourcePatientInfo"><ValueList><Value>PID-3|CHPAM3946^^^&amp;1.3.6.1.4.1.12559.11.20.1&amp;ISO'
        f'</Value><Value>PID-5|Eméry^Roman Remo</Value><Value>PID-7|20110816</Value><Value>PID-8|M</Value>'
        f'</ValueList></Slot>'])
    replacements = [
        ('<Slot name="languageCode">', extra_slots + '<Slot name="languageCode">'),
        ('<Slot name="authorRole">', slot.format("authorInstitution", INSTITUTION) + '<Slot name="authorRole">'),
        ('value="CHPAM3946^^^&amp;1.3.6.1.4.1.12559.11.20.1&amp;ISO" id="urn:uuid:3dbba224',
         f'value="{mpi_cx}" id="urn:uuid:3dbba224'),
        ('value="CHPAM3946^^^&amp;1.3.6.1.4.1.12559.11.20.1&amp;ISO" id="urn:uuid:b155cad3',
         f'value="{mpi_cx}" id="urn:uuid:b155cad3'),
        ("2.25.267241352778226683619515102048382761723", doc_uid),
        ("2.25.194301908197721326796925171598754063498", set_uid),
        ("urn:uuid:af516d8d-c449-4a8b-bbb4-9e36489d474d", entry),
        ("urn:uuid:a459a58b-1c47-4b43-b7db-82eb1b340168", package),
        ('nodeRepresentation="17621005" id="urn:uuid:73c2ed0f',
         f'nodeRepresentation="{confidentiality[0]}" id="urn:uuid:73c2ed0f'),
        ("cid:8ba22b9e-fcff-49d8-945e-438a11f25b0f-1@urn%3Aihe%3Aiti%3Axds-b%3A2007",
         "cid:" + content_id.replace(":", "%3A")),
    ]
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 2 if old.startswith('<Slot name="authorRole">') else -1)
    confidentiality_at = text.index(f'nodeRepresentation="{confidentiality[0]}" id="urn:uuid:73c2ed0f')
    text = text[:confidentiality_at] + text[confidentiality_at:].replace(
        "<Value>2.16.840.1.113883.6.96</Value>", f"<Value>{confidentiality[1]}</Value>", 1)
    if replaces:
        text = text.replace("</RegistryObjectList>", (
            f'<Association associationType="urn:ihe:iti:2007:AssociationType:RPLC" sourceObject="{entry}" '
            f'targetObject="{replaces}" id="urn:uuid:{uuid.uuid4()}"/></RegistryObjectList>'))
    head, tail = text.split("\0SECURITY\0")
    soap = head.encode() + WSSE_SECURITY_OPEN.encode() + assertion + b"</wsse:Security>" + tail.encode()
    return Iti41(soap=soap, document=content, document_unique_id=doc_uid, submission_set_unique_id=set_uid,
                 entry_uuid=entry, boundary=f"uuid:{uuid.uuid4()}", content_id=content_id)


def pix_request(spid: str, *, data_source: str, receiver: str = "2.16.756.5.30.1.177.2.2.1.1.3") -> bytes:
    """cara's recorded PIX V3 query (`iti-45-*.http`), by EPR-SPID."""
    return compact(f"""<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header>
<Action soap:mustUnderstand="true" xmlns="http://www.w3.org/2005/08/addressing">urn:hl7-org:v3:PRPA_IN201309UV02</Action>
<MessageID xmlns="http://www.w3.org/2005/08/addressing">urn:uuid:{uuid.uuid4()}</MessageID>
<To xmlns="http://www.w3.org/2005/08/addressing">https://community.test/PIXPDQV3ManagerService</To>
<ReplyTo xmlns="http://www.w3.org/2005/08/addressing"><Address>http://www.w3.org/2005/08/addressing/anonymous</Address></ReplyTo>
</soap:Header><soap:Body><PRPA_IN201309UV02 xmlns="urn:hl7-org:v3" ITSVersion="XML_1.0">
    <id extension="1663085902758" root="1.3.6.1.4.1.21367.2017.2.1.104"/>
    <creationTime value="20220922053322"/>
    <interactionId extension="PRPA_IN201309UV02" root="2.16.840.1.113883.1.6"/>
    <processingCode code="T"/><processingModeCode code="T"/><acceptAckCode code="AL"/>
    <receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE"><id root="{receiver}"/></device></receiver>
    <sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id root="2.16.756.5.30.1.145.1.1"/></device></sender>
    <controlActProcess classCode="CACT" moodCode="EVN">
        <code code="PRPA_TE201309UV02" codeSystem="2.16.840.1.113883.1.6"/>
        <authorOrPerformer typeCode="AUT"><assignedPerson classCode="ASSIGNED"><id root="2.16.756.5.30.1.196.3.2.1"/></assignedPerson></authorOrPerformer>
        <queryByParameter>
            <queryId extension="1663085902759" root="1.3.6.1.4.1.21367.2017.2.1.104"/>
            <statusCode code="new"/><responsePriorityCode code="I"/>
            <parameterList>
                <dataSource><value root="{data_source}"/><semanticsText>DataSource.id</semanticsText></dataSource>
                <dataSource><value root="2.16.756.5.30.1.127.3.10.3"/><semanticsText>DataSource.id</semanticsText></dataSource>
                <patientIdentifier><value extension="{spid}" root="2.16.756.5.30.1.127.3.10.3"/><semanticsText>Patient.id</semanticsText></patientIdentifier>
            </parameterList>
        </queryByParameter>
    </controlActProcess>
</PRPA_IN201309UV02></soap:Body></soap:Envelope>""").encode()


def client(stub: CommunityStub, *, with_certificate: bool = True, timeout: float = 10.0) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(stub.keys.ca_cert))
    if with_certificate:
        context.load_cert_chain(str(stub.keys.source_cert), str(stub.keys.source_key))
    return httpx.Client(verify=context, timeout=timeout)


def soap_post(http: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return http.post(url, content=body, headers={"Content-Type": "application/soap+xml; charset=UTF-8"})


def send_syslog(stub: CommunityStub, frames: list[bytes], *, with_certificate: bool = True) -> None:
    context = ssl.create_default_context(cafile=str(stub.keys.ca_cert))
    if with_certificate:
        context.load_cert_chain(str(stub.keys.source_cert), str(stub.keys.source_key))
    host, port = stub.atna_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        for frame in frames:
            tls.sendall(frame)
        # Half-close, then read to the end: closing with the server's TLS 1.3 session tickets unread
        # would send a TCP RST, which may discard frames the server has not read yet.
        tls.shutdown(socket.SHUT_WR)
        try:
            while tls.recv(4096):
                pass
        except (ssl.SSLError, OSError):
            pass


def syslog_frame(xml: bytes, *, msg_id: str = "IHE+RFC-3881", bom: bool = False) -> bytes:
    """RFC 5424 (facility authpriv, severity notice, as ITI-20) in RFC 5425 octet counting."""
    header = f"<85>1 {instant(dt.datetime.now(dt.timezone.utc))} gateway.test epr-gateway 4242 {msg_id} - ".encode()
    message = header + (b"\xef\xbb\xbf" if bom else b"") + xml
    return str(len(message)).encode() + b" " + message
