"""ITI-41 Provide and Register Document Set-b: the MTOM request, and its answer as an outcome.

The request: the ebRIM metadata (`ebrim.py`) in a SOAP 1.2 envelope with WS-Addressing and the XUA
assertion (`soap.py`), the documents as binary MIME parts (`mtom.py`). The answer, plain or multipart:
its `RegistryResponse` status and every `RegistryError` decide the outcome (`outcomes.py`):

- Success → delivered (warnings kept).
- `XDSDuplicateUniqueIdInRegistry` naming this submission set → already delivered: the submission set
  uniqueId is the same on every attempt, so the community holding it means an earlier attempt landed.
- `XDSNonIdenticalHash`, or a duplicate naming one of the documents (not the submission set) → a
  conflict for an operator: the community holds that document under another submission.
- The consent filter's refusal of the confidentiality → raise it: emedo answers `XDSRepositoryError`
  "Consent filter applied", the former platform `XDSRegistryError` "Unexpected registry error." at
  location "Sense XDS Registry" (cara-community.md). At secret there is nothing higher: rejected.
- Any other error (a metadata error naming an unknown code, …) → rejected, with the community's code
  and text.
- A SOAP fault, HTTP 5xx, an answer that is not a RegistryResponse (HTTP 202 without body, HTML from a
  proxy) → transport: nothing is known, and a re-send with the same ids is safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from lxml import etree

from adapters.cara.vocabulary import CONFIDENTIALITY_RANK
from adapters.community import mtom, soap
from adapters.community.ebrim import OutgoingSubmission, Repository, provide_and_register
from adapters.community.outcomes import (
    AlreadyDelivered,
    Conflict,
    Delivered,
    Outcome,
    RaiseConfidentiality,
    RegistryError,
    Rejected,
    TransportFailure,
)
from adapters.community.transport import HttpAnswer
from adapters.community.xds_table import document_unique_id, submission_set_unique_id
from adapters.community.xua import IssuedAssertion

ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
_LEVELS = sorted(CONFIDENTIALITY_RANK, key=CONFIDENTIALITY_RANK.__getitem__)
_TEXT_LIMIT = 500  # of a community's text kept in an outcome (their texts are short; a proxy's HTML is not)


@dataclass(frozen=True)
class Iti41Request:
    content_type: str  # the HTTP Content-Type (multipart/related …)
    body: bytes
    soap: bytes  # the root part as sent
    message_id: str
    submission: OutgoingSubmission  # with each document's Content-ID


def build_request(submission: OutgoingSubmission, repository: Repository, *, endpoint: str,
                  assertion: IssuedAssertion) -> Iti41Request:
    documents = tuple(replace(d, content_id=mtom.content_id()) for d in submission.documents)
    submission = replace(submission, documents=documents)
    body = provide_and_register(submission, repository)
    message = soap.message_id()
    header = (soap.addressing_headers(action=ACTION, to=endpoint, message=message)
              + soap.security_header(assertion.xml, assertion.namespaces))
    envelope = soap.envelope(header=header, body=body)
    parts = [mtom.Part(d.content_id, d.document.entry.mime_type, d.document.content) for d in documents]
    written = mtom.write(envelope, parts, action=ACTION)
    return Iti41Request(written.content_type, written.body, envelope, message, submission)


def outcome_of(answer: HttpAnswer, submission: OutgoingSubmission) -> Outcome:
    """The outcome of one attempt from the community's HTTP answer."""
    try:
        content = soap.body_of(soap.parse(mtom.soap_part(answer.content_type, answer.body)))
    except (mtom.NotSoap, soap.SoapAnswerUnreadable) as exc:
        if 400 <= answer.status < 500 and answer.status not in (408, 429):
            return Rejected(f"HTTP {answer.status}", _short(f"the repository refused the request: {exc}"))
        return TransportFailure(_short(f"HTTP {answer.status}: no RegistryResponse ({exc})"))
    fault = soap.fault_of(content)
    if fault is not None:
        return TransportFailure(_short(f"HTTP {answer.status}: {fault}"), soap_fault=True)
    if content.tag != f"{{{RS}}}RegistryResponse":
        return TransportFailure(_short(f"HTTP {answer.status}: the answer holds {content.tag}, not a RegistryResponse"))
    return _registry_outcome(content, submission)


def registry_errors(response: etree._Element) -> tuple[RegistryError, ...]:
    return tuple(
        RegistryError(code=e.get("errorCode", ""), context=(e.get("codeContext") or (e.text or "")).strip(),
                      location=e.get("location"), severity=(e.get("severity") or "Error").rpartition(":")[2])
        for e in response.iterfind(f"{{{RS}}}RegistryErrorList/{{{RS}}}RegistryError"))


def _registry_outcome(response: etree._Element, submission: OutgoingSubmission) -> Outcome:
    status = response.get("status", "")
    errors = registry_errors(response)
    failures = tuple(e for e in errors if e.severity != "Warning")
    if status == SUCCESS:  # registered; whatever else it lists is kept (Success carries warnings only)
        return Delivered(errors)
    set_id = submission_set_unique_id(submission.submission_set_unique_id)
    documents = [document_unique_id(d.document.entry.unique_id) for d in submission.documents]
    duplicates = [e for e in failures if e.code == "XDSDuplicateUniqueIdInRegistry"]
    if any(_names(e, set_id) for e in duplicates):
        return AlreadyDelivered(errors)
    conflicting = [e for e in failures if e.code == "XDSNonIdenticalHash"] + duplicates
    if conflicting:
        named = tuple(d for d in documents if any(_names(e, d) for e in conflicting)) or tuple(documents)
        first = conflicting[0]
        return Conflict(set_id, named, first.code, _short(first.context), errors)
    refusal = next((e for e in failures if _consent_filter(e)), None)
    if refusal is not None:
        level = submission.confidentiality
        if level != _LEVELS[-1]:
            return RaiseConfidentiality(level, _LEVELS[_LEVELS.index(level) + 1], refusal.code,
                                        _short(refusal.context), errors)
        return Rejected(refusal.code, _short(f"refused even at {level}: {refusal.context}"), errors)
    if not failures:
        return Rejected(status.rpartition(":")[2] or "Failure", "the community answered Failure without an error",
                        errors)
    first = failures[0]
    return Rejected(first.code, _short("; ".join(str(e) for e in failures)), errors)


def _consent_filter(error: RegistryError) -> bool:
    if error.code == "XDSRepositoryError" and "consent filter applied" in error.context.casefold():
        return True  # emedo
    return (error.code == "XDSRegistryError" and error.context.casefold().rstrip(".") == "unexpected registry error"
            and (error.location or "").strip() == "Sense XDS Registry")  # the former platform


def _names(error: RegistryError, unique_id: str) -> bool:
    """The error names this uniqueId (as a whole token: 2.25.12 is not named by 2.25.123)."""
    pattern = re.compile(rf"(?<![0-9A-Za-z.\-]){re.escape(unique_id)}(?![0-9A-Za-z.\-])")
    return any(pattern.search(text) for text in (error.context, error.location or ""))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT - 1] + "…"
