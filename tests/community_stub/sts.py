"""The community's STS (ITI-40, Get X-User Assertion) for a technical user, as Annex 5 amendment 2
and the recorded messages show it (`XUA_samples/3_*Technical_User*`, `files/GetXAssertion.md`,
`cara-ikit/requests/sts-tcu-httpheader-eprik.http`).

It checks the technical user's own assertion (signature against the registered certificate,
Issuer/NameID = the registered OID, validity window without tolerance: the faq's "even below
second differences" make an assertion "in the future"), then the claims, and answers a signed
X-User Assertion whose subject is the responsible professional. Like emedo's STS, the assertion
relies on `xmlns:xsi` and `xmlns:s` declared on an outer element (changelog "STS XUA token
response"), and carries line breaks of its own: a client must put it into `wsse:Security` exactly
as issued. The STS remembers the bytes of every assertion it issued.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from .mtom import assertion_span
from .soap import HL7, SAML2, SOAP12, WSA, WSSE, WST, Answer, Refusal, parse_envelope, soap_fault
from .xmldsig import SignatureInvalid, sign_enveloped, verify_enveloped

ISSUE_ACTION = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue"
CLAIMS_DIALECT = "http://www.bag.admin.ch/epr/2017/annex/5/amendment/2"
SAML_TOKEN_TYPE = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"
SPID_CX = re.compile(r"^(\d{18})\^\^\^&2\.16\.756\.5\.30\.1\.127\.3\.10\.3&ISO$")
ROLE_SYSTEM = "2.16.756.5.30.1.127.3.10.6"
PURPOSE_SYSTEM = "2.16.756.5.30.1.127.3.10.5"
STS_ISSUER = "urn:oid:2.16.756.5.30.1.177.1.0.1"  # the stub's STS (cara's OID arc, .1.0.1 invented)
_ENS = ("ERROR <Ens>ErrBPTerminated: Terminating BP BINT.AD.XUA.Process.AssertionProviderProcess # due to "
        "error: ")
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=False)


@dataclass(frozen=True)
class TechnicalUser:
    oid: str
    certificate: x509.Certificate
    principals: dict[str, str]  # GLN -> name of the professionals it may act for


@dataclass(frozen=True)
class IssuedAssertion:
    assertion_id: str
    raw: bytes
    spid: str
    principal_gln: str
    principal_name: str
    technical_user_oid: str
    not_before: dt.datetime
    not_on_or_after: dt.datetime


@dataclass
class StsState:
    technical_users: dict[str, TechnicalUser] = field(default_factory=dict)
    issued: dict[bytes, IssuedAssertion] = field(default_factory=dict)
    issued_in_order: list[IssuedAssertion] = field(default_factory=list)
    lifetime: dt.timedelta = dt.timedelta(minutes=5)
    max_request_lifetime: dt.timedelta = dt.timedelta(hours=1)
    clock_skew: dt.timedelta = dt.timedelta(0)
    lock: threading.Lock = field(default_factory=threading.Lock)


def sts_fault(detail: str) -> Refusal:
    refusal = soap_fault(_ENS + detail)
    return Refusal(refusal.answer, detail)


def handle_sts(body: bytes, *, state: StsState, known_spids: set[str], sts_key: rsa.RSAPrivateKey,
               sts_certificate: x509.Certificate, home_community_id: str) -> tuple[Answer, IssuedAssertion]:
    if b"<!--" in body:
        raise sts_fault("ERROR #5002: XML comments are not accepted in the request")
    envelope, _header = parse_envelope(body, PARSER)
    action = envelope.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}Action")
    if (action or "").strip() != ISSUE_ACTION:
        raise soap_fault(f"wsa:Action must be {ISSUE_ACTION}", code="Sender",
                         subcode=(WSA, "ActionNotSupported"))
    message_id = (envelope.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}MessageID") or "").strip()
    token = envelope.find(f"{{{SOAP12}}}Header/{{{WSSE}}}Security/{{{SAML2}}}Assertion")
    if token is None:
        raise sts_fault("ERROR #5001: no technical user assertion in wsse:Security")
    user = _authenticate(token, state)
    now = dt.datetime.now(dt.timezone.utc)
    _check_window(token, now, state)
    request = envelope.find(f"{{{SOAP12}}}Body/{{{WST}}}RequestSecurityToken")
    if request is None:
        raise soap_fault("wst:RequestSecurityToken missing", code="Sender")
    if (request.findtext(f"{{{WST}}}RequestType") or "").strip() != "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue":
        raise sts_fault("ERROR #5002: RequestType must be Issue")
    if (request.findtext(f"{{{WST}}}TokenType") or "").strip() != SAML_TOKEN_TYPE:
        raise sts_fault("ERROR #5002: TokenType must be SAML 2.0")
    claims = request.find(f"{{{WST}}}Claims")
    if claims is None or claims.get("Dialect") != CLAIMS_DIALECT:
        raise sts_fault(f"ERROR #5002: wst:Claims with Dialect {CLAIMS_DIALECT} missing")
    spid, gln, name = _claims(claims, user)
    if spid not in known_spids:
        raise sts_fault(f"ERROR #5001: patient {spid} not found")
    applies_to = request.findtext(
        "{http://schemas.xmlsoap.org/ws/2004/09/policy}AppliesTo/{http://www.w3.org/2005/08/addressing}EndpointReference/"
        "{http://www.w3.org/2005/08/addressing}Address") or ""
    response, issued = _issue(spid=spid, gln=gln, name=name, user=user, now=now, state=state,
                              relates_to=message_id, applies_to=applies_to.strip(), key=sts_key,
                              certificate=sts_certificate, home_community_id=home_community_id)
    with state.lock:
        state.issued[issued.raw] = issued
        state.issued_in_order.append(issued)
    return Answer(200, "application/soap+xml; charset=UTF-8", response), issued


def _authenticate(token: etree._Element, state: StsState) -> TechnicalUser:
    issuer = _oid(token.findtext(f"{{{SAML2}}}Issuer"))
    name_id = _oid(token.findtext(f"{{{SAML2}}}Subject/{{{SAML2}}}NameID"))
    user = state.technical_users.get(name_id)
    if user is None:
        raise sts_fault(f"ERROR #5001: Failed to load user:{name_id}")
    if issuer != user.oid:
        raise sts_fault(f"ERROR #5001: Issuer {issuer} is not the technical user {user.oid}")
    try:
        verify_enveloped(token, certificate=user.certificate)
    except SignatureInvalid as error:
        raise sts_fault(f"ERROR #5002: SAML token validation failure: {error}") from None
    return user


def _check_window(token: etree._Element, now: dt.datetime, state: StsState) -> None:
    conditions = token.find(f"{{{SAML2}}}Conditions")
    if conditions is None:
        raise sts_fault("ERROR #5002: saml2:Conditions missing")
    not_before = _instant(conditions.get("NotBefore"), "NotBefore")
    not_after = _instant(conditions.get("NotOnOrAfter"), "NotOnOrAfter")
    issued = _instant(token.get("IssueInstant"), "IssueInstant")
    if not_before > now + state.clock_skew or issued > now + state.clock_skew:
        raise sts_fault(f"ERROR #5002: SAML token validation failure: assertion is in the future "
                        f"(NotBefore {conditions.get('NotBefore')})")
    if not_after <= now - state.clock_skew:
        raise sts_fault(f"ERROR #5002: SAML token validation failure: assertion expired "
                        f"(NotOnOrAfter {conditions.get('NotOnOrAfter')})")
    if not_after - not_before > state.max_request_lifetime:
        raise sts_fault("ERROR #5002: SAML token validation failure: validity longer than allowed")


def _claims(claims: etree._Element, user: TechnicalUser) -> tuple[str, str, str]:
    values = {}
    for attribute in claims.iterfind(f"{{{SAML2}}}Attribute"):
        name = attribute.get("Name")
        if name in values:
            raise sts_fault(f"ERROR #5002: claim {name} given twice")
        values[name] = attribute.find(f"{{{SAML2}}}AttributeValue")
    resource = _text(values.get("urn:oasis:names:tc:xacml:2.0:resource:resource-id"))
    match = SPID_CX.match(resource)
    if match is None:
        raise sts_fault(f"ERROR #5002: resource-id must be the EPR-SPID in CX form, not {resource!r}")
    _coded(values.get("urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"), "PurposeOfUse", "AUTO", PURPOSE_SYSTEM)
    _coded(values.get("urn:oasis:names:tc:xacml:2.0:subject:role"), "Role", "TCU", ROLE_SYSTEM)
    gln = _text(values.get("urn:e-health-suisse:principal-id"))
    if not _valid_gln(gln):
        raise sts_fault(f"ERROR #5002: principal-id must be a GLN, not {gln!r}")
    if gln not in user.principals:
        raise sts_fault(f"ERROR #5001: Failed to load user:{gln} (not a principal of {user.oid})")
    name = _text(values.get("urn:e-health-suisse:principal-name"))
    if not name:
        raise sts_fault("ERROR #5002: principal-name missing")
    return match.group(1), gln, name


def _coded(value: etree._Element | None, element: str, code: str, system: str) -> None:
    coded = value.find(f"{{{HL7}}}{element}") if value is not None else None
    if coded is None or coded.get("code") != code or coded.get("codeSystem") != system:
        raise sts_fault(f"ERROR #5002: claim {element} must be {code} ({system})")
    if not coded.get("displayName"):
        # changelog: "the display names for the coded claims have to be provided" (EPR-1404)
        raise sts_fault(f"ERROR #5002: SAML token validation failure: {element}@displayName attribute required")


def _issue(*, spid, gln, name, user, now, state, relates_to, applies_to, key, certificate, home_community_id):
    not_after = now + state.lifetime
    assertion_id = f"_{uuid.uuid4()}"
    created, expires = _xsd(now), _xsd(not_after)
    tu = escape(f"urn:oid:{user.oid}")
    attribute = ('<saml2:Attribute Name="{0}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">'
                 '<saml2:AttributeValue{1}>{2}</saml2:AttributeValue></saml2:Attribute>')
    statements = "\n".join([
        attribute.format("urn:oasis:names:tc:xspa:1.0:subject:subject-id", ' xsi:type="s:string"', escape(name)),
        attribute.format("urn:oasis:names:tc:xacml:2.0:subject:role", "",
                         f'<Role xmlns="{HL7}" code="HCP" codeSystem="{ROLE_SYSTEM}" codeSystemName="eHealth Suisse EPR Akteure" '
                         'displayName="Healthcare professional" xsi:type="CE"/>'),
        attribute.format("urn:oasis:names:tc:xspa:1.0:subject:purposeofuse", "",
                         f'<PurposeOfUse xmlns="{HL7}" code="AUTO" codeSystem="{PURPOSE_SYSTEM}" '
                         'codeSystemName="eHealth Suisse Verwendungszweck" displayName="Automatic Upload" xsi:type="CE"/>'),
        attribute.format("urn:oasis:names:tc:xacml:2.0:resource:resource-id", ' xsi:type="s:string"',
                         f"{spid}^^^&amp;2.16.756.5.30.1.127.3.10.3&amp;ISO"),
        attribute.format("urn:ihe:iti:xca:2010:homeCommunityId", ' xsi:type="s:anyURI"',
                         escape(f"urn:oid:{home_community_id}")),
    ])
    assertion = (
        f'<saml2:Assertion xmlns:saml2="{SAML2}" xmlns:del="urn:oasis:names:tc:SAML:2.0:conditions:delegation" '
        f'ID="{assertion_id}" IssueInstant="{created}" Version="2.0">\n<saml2:Issuer>{STS_ISSUER}</saml2:Issuer>\n'
        f'<saml2:Subject><saml2:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" '
        f'NameQualifier="urn:gs1:gln">{gln}</saml2:NameID>\n<saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
        f'<saml2:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" '
        f'NameQualifier="urn:e-health-suisse:technical-user-id">{tu}</saml2:NameID></saml2:SubjectConfirmation></saml2:Subject>\n'
        f'<saml2:Conditions NotBefore="{created}" NotOnOrAfter="{expires}"><saml2:AudienceRestriction>'
        f'<saml2:Audience>urn:e-health-suisse:token-audience:all-communities</saml2:Audience></saml2:AudienceRestriction>\n'
        f'<saml2:Condition xsi:type="del:DelegationRestrictionType"><del:Delegate><saml2:NameID '
        f'NameQualifier="urn:e-health-suisse:technical-user-id" Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">'
        f'{tu}</saml2:NameID></del:Delegate></saml2:Condition></saml2:Conditions>\n'
        f'<saml2:AuthnStatement AuthnInstant="{created}"><saml2:AuthnContext><saml2:AuthnContextClassRef>'
        f'urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement>\n'
        f'<saml2:AttributeStatement>\n{statements}\n</saml2:AttributeStatement>\n</saml2:Assertion>')
    document = (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP12}"><soapenv:Header xmlns:wsa="{WSA}">'
        f'<wsa:Action>http://docs.oasis-open.org/ws-sx/ws-trust/200512/RSTRC/IssueFinal</wsa:Action>'
        f'<wsa:RelatesTo>{escape(relates_to)}</wsa:RelatesTo></soapenv:Header><soapenv:Body>'
        f'<wst:RequestSecurityTokenResponseCollection xmlns:wst="{WST}" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:s="http://www.w3.org/2001/XMLSchema">'
        f'<wst:RequestSecurityTokenResponse><wst:TokenType>{SAML_TOKEN_TYPE}</wst:TokenType><wst:Lifetime>'
        f'<wsu:Created xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">{created}</wsu:Created>'
        f'<wsu:Expires xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">{expires}</wsu:Expires>'
        f'</wst:Lifetime><wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><wsa:EndpointReference '
        f'xmlns:wsa="{WSA}"><wsa:Address>{escape(applies_to)}</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>'
        f'<wst:RequestedSecurityToken>{assertion}</wst:RequestedSecurityToken></wst:RequestSecurityTokenResponse>'
        f'</wst:RequestSecurityTokenResponseCollection></soapenv:Body></soapenv:Envelope>')
    tree = etree.fromstring(document.encode(), PARSER)
    signed = tree.find(f".//{{{SAML2}}}Assertion")
    sign_enveloped(signed, key=key, certificate=certificate, after=signed.find(f"{{{SAML2}}}Issuer"),
                   prefixes=("del", "s"))
    response = etree.tostring(tree, xml_declaration=True, encoding="utf-8")
    start, end = assertion_span(response)
    return response, IssuedAssertion(assertion_id=assertion_id, raw=response[start:end], spid=spid,
                                     principal_gln=gln, principal_name=name, technical_user_oid=user.oid,
                                     not_before=now, not_on_or_after=not_after)


def _oid(value: str | None) -> str:
    value = (value or "").strip()
    return value[len("urn:oid:"):] if value.startswith("urn:oid:") else value


def _text(element: etree._Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _instant(value: str | None, what: str) -> dt.datetime:
    try:
        instant = dt.datetime.fromisoformat(value or "")
    except ValueError:
        raise sts_fault(f"ERROR #5002: {what} is not an xsd:dateTime: {value!r}") from None
    if instant.tzinfo is None:
        raise sts_fault(f"ERROR #5002: {what} has no time zone")
    return instant


def _xsd(instant: dt.datetime) -> str:
    return instant.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _valid_gln(gln: str) -> bool:
    if not re.fullmatch(r"\d{13}", gln):
        return False
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(gln[:12]))
    return (10 - total % 10) % 10 == int(gln[12])
