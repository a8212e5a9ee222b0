"""A remote MHD Document Recipient's answer to ITI-65 → the deliverer's outcome (`outcomes.py`).

- 200 with a `transaction-response` that answers every entry of the request with a 2xx: delivered,
  each document's reference as the recipient answered it kept (`locations`). When no document entry is
  `201 Created` the recipient already held every document with these bytes (its idempotent answer to a
  re-sent submission after a lost answer): already delivered. The DocumentReferences are paired with
  the request's documents in their order among the answer's entries, not by position: FHIR wants the
  request's order, but the CH EPR example answer (the Mobile Access Gateway's) puts the Binary first.
- 409: a conflict for an operator (a uniqueId held with other bytes, a submission set uniqueId held for
  other documents, an original already replaced), with the recipient's code and words.
- 422 with `XDSPatientIDReconciliationError` (CH MHD's code for a patient the recipient does not know):
  the document waits for the patient. Any other 4xx: rejected, with the recipient's code (the CH MHD
  code in `issue.details` when it gives one, else the FHIR issue code) and text, every issue kept.
- 408, 425, 429, 5xx, a 200 that is not a readable transaction-response, and anything else that
  says nothing of what the recipient did: a transport failure (try again with the same ids).
- 401 is the caller's (`mhd.py`: a new token, one more try). A redirect is rejected: the configured
  `mhd_url` is not where the recipient is.

The recipient's words are bounded and kept to one line: they go to the outbox and the operator's
screen, never into a log with document content.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from adapters.community.outcomes import (
    AlreadyDelivered,
    Conflict,
    Delivered,
    Outcome,
    RegistryError,
    Rejected,
    TransportFailure,
    WaitingPatient,
)
from adapters.community.transport import HttpAnswer

UNKNOWN_PATIENT = "XDSPatientIDReconciliationError"
RETRY_STATUSES = frozenset({408, 425, 429})
_STATUS = re.compile(r"([0-9]{3})(?: .*)?")
_REFERENCE = re.compile(r"(?:.*/)?(DocumentReference/[A-Za-z0-9.-]{1,64})(?:/_history/[A-Za-z0-9.-]{1,64})?")
MAX_ISSUES = 20


def outcome_of(answer: HttpAnswer, *, entry_count: int, entry_uuids: tuple[str, ...], submission_set_unique_id: str,
               document_unique_ids: tuple[str, ...]) -> Outcome:
    """`entry_count`: the request Bundle's entries; `entry_uuids`: its documents', in the request's order."""
    status = answer.status
    if 200 <= status < 300:
        return _transaction_response(answer, entry_count, entry_uuids)
    if status >= 500 or status in RETRY_STATUSES or status < 200:
        return TransportFailure(f"ITI-65 HTTP {status}" + _said(answer))
    if 300 <= status < 400:
        return Rejected(f"http-{status}", "the recipient redirects elsewhere: mhd_url is not the recipient's FHIR base")
    errors = issues_of(answer)
    code = next((e.code for e in errors if e.severity == "Error"), f"http-{status}")
    text = "; ".join(e.context for e in errors if e.context) or f"HTTP {status} without an OperationOutcome"
    if status == 409:
        return Conflict(submission_set_unique_id, document_unique_ids, code, text, errors)
    if status == 422 and any(e.code == UNKNOWN_PATIENT for e in errors):
        return WaitingPatient(f"the recipient does not know the patient ({text})")
    return Rejected(code, text, errors)


def issues_of(answer: HttpAnswer) -> tuple[RegistryError, ...]:
    """Each issue of an OperationOutcome answer as (code, text, location, severity): the CH MHD error
    code of `issue.details` when there is one (`details.coding[0].code` or `details.text` as the CH EPR
    examples put it), else the FHIR issue type. Empty when the answer is no OperationOutcome."""
    document = _json(answer.body)
    if not isinstance(document, dict) or document.get("resourceType") != "OperationOutcome":
        return ()
    found = []
    for issue in (document.get("issue") or [])[:MAX_ISSUES]:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
        codings = [c for c in details.get("coding") or [] if isinstance(c, dict) and isinstance(c.get("code"), str)]
        code = codings[0]["code"] if codings else details.get("text") if _is_code(details.get("text")) else None
        code = code or (issue.get("code") if isinstance(issue.get("code"), str) else "unknown")
        text = issue.get("diagnostics") if isinstance(issue.get("diagnostics"), str) else details.get("text")
        where = issue.get("expression") or issue.get("location") or []
        location = where[0] if isinstance(where, list) and where and isinstance(where[0], str) else None
        severity = "Warning" if issue.get("severity") in ("warning", "information") else "Error"
        found.append(RegistryError(_line(code, 80), _line(text or "", 500), location and _line(location, 200),
                                   severity))
    return tuple(found)


def _transaction_response(answer: HttpAnswer, entry_count: int, entry_uuids: tuple[str, ...]) -> Outcome:
    document = _json(answer.body)
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle" \
            or document.get("type") != "transaction-response":
        return TransportFailure(f"ITI-65 HTTP {answer.status}: the answer is not a transaction-response Bundle")
    entries = document.get("entry") if isinstance(document.get("entry"), list) else []
    if len(entries) != entry_count:
        return TransportFailure(f"ITI-65: the transaction-response answers {len(entries)} entries, the request "
                                f"had {entry_count}")
    documents = []  # (status, reference) of each DocumentReference answered, in the answer's order
    for position, entry in enumerate(entries):
        response = entry.get("response") if isinstance(entry, dict) else None
        status = response.get("status") if isinstance(response, dict) else None
        match = _STATUS.fullmatch(status) if isinstance(status, str) else None
        if match is None or not 200 <= int(match[1]) < 300:
            return TransportFailure(f"ITI-65: entry {position} of the transaction-response is not a success")
        location = response.get("location")
        reference = _REFERENCE.fullmatch(location) if isinstance(location, str) else None
        if reference is not None:
            documents.append((int(match[1]), reference[1]))
    if len(documents) != len(entry_uuids):
        return TransportFailure(f"ITI-65: the transaction-response names {len(documents)} DocumentReferences for "
                                f"{len(entry_uuids)} documents")
    locations = tuple(zip(entry_uuids, (reference for _, reference in documents), strict=True))
    if any(status == 201 for status, _ in documents):
        return Delivered(locations=locations)
    return AlreadyDelivered((), locations)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _said(answer: HttpAnswer) -> str:
    errors = issues_of(answer)
    said = "; ".join(e.context for e in errors if e.context)
    return f": {said}" if said else ""


def _is_code(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.:-]{0,79}", value) is not None


def _line(value: str, limit: int) -> str:
    return "".join(c if c.isprintable() else " " for c in value)[:limit]
