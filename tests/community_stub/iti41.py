"""ITI-41 Provide and Register Document Set-b as the platform takes it: MTOM and its byte traps,
WS-Addressing, the X-User Assertion byte for byte as the STS issued it, the XSDs, then the
registry's rules (`registry.py`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lxml import etree

from .ebrim import SET_PATIENT_ID, read_submission
from .fixtures import xds_schema
from .mtom import assertion_span, check_soap_bytes, parse_mtom
from .registry import RegistryState, StoredDocument, SubmissionRefused, register
from .soap import (ANONYMOUS, SAML2, SOAP12, WSA, WSSE, XDS_B, XOP, Answer, Refusal, mtom_answer, parse_envelope,
                   plain_answer, registry_failure, registry_response_envelope, soap_fault)
from .sts import IssuedAssertion, StsState

ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
_TRUE = ("true", "1")


@dataclass(frozen=True)
class Provided:
    answer: Answer
    stored: list[StoredDocument]
    assertion: IssuedAssertion


def handle_iti41(content_type: str | None, body: bytes, *, registry: RegistryState, sts: StsState,
                 mpi: dict[str, str], multipart_answers: bool) -> Provided:
    request = parse_mtom(content_type, body)
    soap = request.root.content
    span = assertion_span(soap)
    check_soap_bytes(soap, span)
    # An assertion extracted from the STS answer without the xsi/s declarations it relies on is not
    # well-formed here (changelog: "it will be invalid xml without the above namespaces declared").
    envelope, header = parse_envelope(soap, _PARSER)
    message_id = _addressing(header)
    assertion = _assertion(header, soap, span, sts)
    provide = envelope.find(f"{{{SOAP12}}}Body/{{{XDS_B}}}ProvideAndRegisterDocumentSetRequest")
    if provide is None:
        raise soap_fault("the Body must hold xds:ProvideAndRegisterDocumentSetRequest", code="Sender")
    contents = {}
    for document in provide.iterfind(f"{{{XDS_B}}}Document"):
        includes = list(document)
        if len(includes) != 1 or includes[0].tag != f"{{{XOP}}}Include" or (document.text or "").strip():
            raise soap_fault(f"xds:Document {document.get('id')} must hold exactly one xop:Include", code="Sender")
        part = request.resolve(includes[0].get("href") or "")
        if part is None:
            raise soap_fault(f"xop:Include {includes[0].get('href')!r} names no MIME part", code="Sender")
        contents[document.get("id")] = part.content
        document.remove(includes[0])  # the XOP infoset holds the part's base64 here: no XSD difference
    schema = xds_schema()
    if not schema.validate(provide):
        problems = "; ".join(f"line {e.line}: {e.message}" for e in list(schema.error_log)[:3])
        raise soap_fault(f"ProvideAndRegisterDocumentSetRequest is not valid against the XDS.b schema: {problems}",
                         code="Sender")
    submission = read_submission(provide)
    _same_patient(submission, assertion, registry, mpi)
    try:
        stored = register(registry, submission, contents)
    except SubmissionRefused as refused:
        raise registry_failure(refused.errors, relates_to=message_id, multipart=multipart_answers) from None
    envelope_bytes = registry_response_envelope([], relates_to=message_id)
    answer = mtom_answer(envelope_bytes) if multipart_answers else plain_answer(envelope_bytes)
    return Provided(answer, stored, assertion)


def _addressing(header: etree._Element) -> str:
    action = header.find(f"{{{WSA}}}Action")
    if action is None or (action.text or "").strip() != ACTION:
        raise soap_fault(f"wsa:Action {ACTION} required", code="Sender", subcode=(WSA, "ActionNotSupported"))
    if action.get(f"{{{SOAP12}}}mustUnderstand") not in _TRUE:
        raise soap_fault("wsa:Action must be mustUnderstand", code="Sender",
                         subcode=(WSA, "MessageAddressingHeaderRequired"))
    message_id = (header.findtext(f"{{{WSA}}}MessageID") or "").strip()
    if not message_id or not (header.findtext(f"{{{WSA}}}To") or "").strip():
        raise soap_fault("wsa:MessageID and wsa:To required", code="Sender",
                         subcode=(WSA, "MessageAddressingHeaderRequired"))
    reply_to = header.find(f"{{{WSA}}}ReplyTo")
    if reply_to is None:
        raise soap_fault("wsa:ReplyTo required", code="Sender", subcode=(WSA, "MessageAddressingHeaderRequired"))
    if (reply_to.findtext(f"{{{WSA}}}Address") or "").strip() != ANONYMOUS:
        # faq "HTTP Error code 202 for SOAP Request": an Address outside ReplyTo's namespace is not
        # the anonymous reply: the platform answers 202 and nothing else.
        raise Refusal(Answer(202, None, b""), "wsa:ReplyTo/wsa:Address is not the anonymous address in "
                      "the WS-Addressing namespace")
    return message_id


def _assertion(header: etree._Element, soap: bytes, span, sts: StsState) -> IssuedAssertion:
    security = header.find(f"{{{WSSE}}}Security")
    token = security.find(f"{{{SAML2}}}Assertion") if security is not None else None
    if token is None or span is None:
        raise soap_fault("wsse:Security with the X-User Assertion required", code="Sender",
                         subcode=(WSSE, "InvalidSecurity"))
    issued = sts.issued.get(soap[span[0]:span[1]])
    if issued is None or issued.assertion_id != token.get("ID"):
        raise soap_fault("the X-User Assertion is not one this community's STS issued, as issued (it must be "
                         "sent byte for byte, never re-serialised)", code="Sender",
                         subcode=(WSSE, "InvalidSecurityToken"))
    if dt.datetime.now(dt.timezone.utc) >= issued.not_on_or_after:
        raise soap_fault("the X-User Assertion has expired", code="Sender", subcode=(WSSE, "FailedAuthentication"))
    return issued


def _same_patient(submission, assertion: IssuedAssertion, registry: RegistryState, mpi: dict[str, str]) -> None:
    """An assertion is for one patient: a submission in the community's domain for another is refused
    (an SPID or an unknown id is left to the registry, which answers XDSUnknownPatientId)."""
    package = submission.submission_set
    patient = package.identifier(SET_PATIENT_ID) if package is not None else None
    extension, _, rest = (patient or "").partition("^^^&")
    if rest == f"{registry.assigning_authority}&ISO" and extension in registry.known_patients \
            and mpi.get(assertion.spid) != extension:
        raise soap_fault(f"the X-User Assertion is for patient {assertion.spid}, not for {patient}", code="Sender",
                         subcode=(WSSE, "FailedAuthentication"))
