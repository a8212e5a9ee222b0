"""CH:MHD-1: a submitted DocumentReference read against the stored entry it updates.

`read_update` returns the entry's next metadata, or raises the IG's errors (OperationOutcome
`details.text`): XDSMetadataIdentifierError when the identifiers differ, XDSPatientIDReconciliationError
when the patient differs, UnmodifiableMetadataError when a value that may never change differs
(uniqueId and entryUUID aside, those are the identifiers): the original provider role ("SHALL NOT be
updated", CH MHD DocumentReference Comprehensive), the status (changed by replacement, ITI-65, not
here), and what describes the bytes themselves (mime type, size, hash, creation time), which an update
of metadata cannot change. `changed_fields` says what an update changes, so that the use-case can decide
who may change it.
"""

from __future__ import annotations

import base64
from dataclasses import fields, replace
from typing import Any

from adapters.cara.errors import MetadataIdentifierMismatch, PatientMismatch, ProfileViolation, UnmodifiableMetadata
from adapters.cara.fhir_mapping import _code, document_metadata  # one reading of DocumentReference
from adapters.cara.mhd_rules import (
    DOCUMENT_DATES,
    _check_identifiers,
    _check_source_patient,
    _Findings,
    check_dates,
    extension,
    first_coding,
    normalised_date,
)
from adapters.cara.model import Code, DocumentEntry
from adapters.cara.vocabulary import (
    CONFIDENTIALITY_CODES,
    EXT_AUTHOR_ROLE,
    EXT_DELETION_STATUS,
    SNOMED,
    SPID_SYSTEM,
)

DELETION_STATUS_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.18"
DELETION_NOT_REQUESTED = "urn:e-health-suisse:2019:deletionStatus:deletionNotRequested"
DELETION_REQUESTED = "urn:e-health-suisse:2019:deletionStatus:deletionRequested"
DELETION_PROHIBITED = "urn:e-health-suisse:2019:deletionStatus:deletionProhibited"
DELETION_STATUSES = (DELETION_NOT_REQUESTED, DELETION_REQUESTED, DELETION_PROHIBITED)

# The entry's fields an update may change, in groups the use-case grants by role.
CONFIDENTIALITY = frozenset({"confidentiality"})
DELETION = frozenset({"deletion_status"})
DESCRIPTIVE = frozenset({"type_code", "class_codes", "format_code", "facility_type", "practice_setting", "language",
                         "title", "date", "description", "event_codes", "service_start", "service_stop", "authors",
                         "source_patient", "source_patient_id", "related", "extensions"})
# Not metadata of the update: the record's own bookkeeping.
_BOOKKEEPING = frozenset({"entry_id", "patient_pid", "status", "version", "submission_set_id", "relations"})


def read_update(doc: dict[str, Any], current: DocumentEntry, *, spid: str, where: str) -> DocumentEntry:
    """The next metadata of `current` from the submitted DocumentReference `doc` (valid R4 already)."""
    _check_profile(doc, where)
    master = (doc.get("masterIdentifier") or {}).get("value")
    official = next((x.get("value") for x in doc.get("identifier", []) if x.get("use") == "official"), None)
    if master != current.unique_id or (official is not None and current.entry_uuid is not None
                                       and official != current.entry_uuid):
        raise MetadataIdentifierMismatch("the DocumentReference's masterIdentifier and identifier must be those of "
                                         "the stored entry", location=f"{where}.masterIdentifier")
    subject = (doc.get("subject") or {}).get("identifier") or {}
    if subject.get("system") != SPID_SYSTEM or subject.get("value") != spid:
        raise PatientMismatch("the DocumentReference names another patient than the stored entry",
                              location=f"{where}.subject.identifier")
    content = doc["content"][0]
    attachment = content["attachment"]
    unmodifiable = _Findings()
    role = _code((extension(doc, EXT_AUTHOR_ROLE) or {}).get("valueCoding"))
    unmodifiable.require(role is not None and role.code == current.original_provider_role.code,
                         "originalProviderRole may not be updated", f"{where}.extension")
    unmodifiable.require(doc.get("status") == current.status, f"status is {current.status}: a metadata update "
                         "does not change it (replace the document instead)", f"{where}.status")
    unmodifiable.require(attachment.get("contentType") == current.mime_type, "the mime type may not be updated",
                         f"{where}.content[0].attachment.contentType")
    unmodifiable.require(normalised_date(attachment.get("creation"), "dateTime") == current.creation_time,
                         "the creation time may not be updated",
                         f"{where}.content[0].attachment.creation")
    if "size" in attachment:
        unmodifiable.require(attachment["size"] == current.size, "the size may not be updated",
                             f"{where}.content[0].attachment.size")
    if "hash" in attachment:
        unmodifiable.require(attachment["hash"] == base64.b64encode(bytes.fromhex(current.sha1)).decode(),
                             "the hash may not be updated", f"{where}.content[0].attachment.hash")
    if unmodifiable.issues:
        raise UnmodifiableMetadata(unmodifiable.issues[0].message, issues=unmodifiable.issues)

    return replace(current, **document_metadata(doc))


def changed_fields(current: DocumentEntry, new: DocumentEntry) -> frozenset[str]:
    """The names of the entry's fields that differ (codes compared by system and code, not display)."""
    changed = set()
    for field in fields(DocumentEntry):
        if field.name in _BOOKKEEPING:
            continue
        if _comparable(getattr(current, field.name)) != _comparable(getattr(new, field.name)):
            changed.add(field.name)
    return frozenset(changed)


def deletion_code(entry: DocumentEntry) -> str:
    return entry.deletion_status.code if entry.deletion_status else DELETION_NOT_REQUESTED


def _comparable(value):
    if isinstance(value, Code):
        return (value.system, value.code)
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _check_profile(doc: dict[str, Any], where: str) -> None:
    """The CH MHD Comprehensive elements an update carries as a provide does (its Binary aside)."""
    found = _Findings()
    for element in ("type",):
        found.require(bool(first_coding(doc.get(element))), f"{element} is required (SNOMED CT)", f"{where}.{element}")
    categories = doc.get("category") or []
    found.require(len(categories) == 1 and bool(first_coding(categories[0])),
                  "exactly one category (classCode) is required", f"{where}.category")
    found.require("docStatus" not in doc, "docStatus must be absent", f"{where}.docStatus")
    found.require("custodian" not in doc, "custodian must be absent", f"{where}.custodian")
    found.require(bool((doc.get("masterIdentifier") or {}).get("value")), "masterIdentifier is required",
                  f"{where}.masterIdentifier")
    labels = [c.get("code") for label in doc.get("securityLabel", []) for c in label.get("coding", [])
              if c.get("system") == SNOMED]
    found.require(any(code in CONFIDENTIALITY_CODES for code in labels),
                  "securityLabel must carry a confidentiality code (SNOMED 17621005, 263856008 or 1141000195107)",
                  f"{where}.securityLabel")
    deletion = (extension(doc, EXT_DELETION_STATUS) or {}).get("valueCoding")
    if deletion is not None:
        found.require(deletion.get("system") == DELETION_STATUS_SYSTEM and deletion.get("code") in DELETION_STATUSES,
                      f"the deletion status is a code of {DELETION_STATUS_SYSTEM}: {', '.join(DELETION_STATUSES)}",
                      f"{where}.extension")
    context = doc.get("context") or {}
    for element in ("facilityType", "practiceSetting"):
        found.require(bool(first_coding(context.get(element))), f"context.{element} is required",
                      f"{where}.context.{element}")
    _check_source_patient(found, doc, context, where)
    _check_identifiers(found, doc, where)
    check_dates(found, doc, where, DOCUMENT_DATES)
    contents = doc.get("content") or []
    if found.require(len(contents) == 1, "exactly one content is required", f"{where}.content"):
        attachment = contents[0].get("attachment") or {}
        for element in ("contentType", "language", "title", "creation"):
            found.require(bool(attachment.get(element)), f"content.attachment.{element} is required",
                          f"{where}.content[0].attachment.{element}")
        found.require("data" not in attachment, "content.attachment.data must be absent",
                      f"{where}.content[0].attachment.data")
        found.require(bool((contents[0].get("format") or {}).get("code")), "content.format (formatCode) is required",
                      f"{where}.content[0].format")
    if found.issues:
        raise ProfileViolation(found.issues[0].message, issues=found.issues)

