"""The CH MHD Comprehensive rules for an ITI-65 Provide Document Bundle.

`check_provide_bundle` receives a Bundle that already parsed as FHIR R4 (so types and structure are
sound) and returns every rule it breaks, each with a FHIRPath location. Mapping to the record's
model (`fhir_mapping`) relies on these rules having passed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from adapters.cara.base64_strict import b64decode_strict
from adapters.cara.dates import InvalidDate, parse_fhir
from adapters.cara.document_content import content_problem
from adapters.cara.errors import Issue
from adapters.cara.identifier_syntax import (
    ENTRY_UUID,
    SOURCE_ID,
    UNIQUE_ID,
    IdentifierKind,
    identifier_problem,
    is_media_type,
    is_spid,
)
from adapters.cara.vocabulary import (
    CONFIDENTIALITY_CODES,
    EXT_AUTHOR_ROLE,
    EXT_DESIGNATION_TYPE,
    EXT_SOURCE_ID,
    LIST_TYPES_SYSTEM,
    ROLE_SYSTEM,
    ROLES,
    SNOMED,
    SPID_SYSTEM,
    SUBMISSION_SET_DESIGNATION,
)

ALLOWED_ENTRY_TYPES = {"List", "DocumentReference", "Binary"}
# A resource's own identifiers by use: what MHD makes of each (ITI TF-3 4.5.1.1, 4.5.1.2).
IDENTIFIER_KINDS = {"usual": UNIQUE_ID, "official": ENTRY_UUID}
# The DocumentReference's dates and their R4 types; every one is read by the gateway's date parser.
DOCUMENT_DATES = (("date", "instant"), ("context.period.start", "dateTime"), ("context.period.end", "dateTime"),
                  ("content[0].attachment.creation", "dateTime"))



def provider_role_rule(role: str | None = None) -> str:
    """What a client sends as originalProviderRole, in one sentence: the profile check here and the role
    check of the use-case (`gateway/exchanges/provenance.py`) say the same."""
    token_role = f" ({role})" if role else ""
    return (f"send the role of your token{token_role} in the system {ROLE_SYSTEM}: the gateway stores the "
            "authenticated user's role, never another")

def extension(resource: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in resource.get("extension", []) if e.get("url") == url), None)


def decode_binary(data: str) -> bytes:
    """Strict base64: characters outside the alphabet are an error, not silently skipped."""
    return b64decode_strict(data)


def first_coding(concept: dict[str, Any] | None) -> dict[str, Any] | None:
    codings = (concept or {}).get("coding") or []
    return codings[0] if codings else None


class _Findings:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def require(self, condition: bool, message: str, location: str) -> bool:
        if not condition:
            self.issues.append(Issue(message, location))
        return condition


def check_provide_bundle(bundle: dict[str, Any]) -> list[Issue]:
    found = _Findings()
    found.require(bundle.get("type") == "transaction", "Bundle.type must be 'transaction'", "Bundle.type")
    entries = bundle.get("entry") or []
    found.require(len(entries) >= 3, "a Provide Document Bundle has a SubmissionSet List, DocumentReference(s) "
                  "and Binary(ies): at least 3 entries", "Bundle.entry")

    by_full_url: dict[str, tuple[int, dict[str, Any]]] = {}
    lists, docrefs, binaries = [], [], []
    for i, entry in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        resource = entry.get("resource") or {}
        rtype = resource.get("resourceType")
        if not found.require(rtype in ALLOWED_ENTRY_TYPES,
                             f"{rtype or 'an entry without resource'} is not allowed in a Provide Document "
                             "Bundle (List, DocumentReference and Binary only; no Patient, no Folder)", where):
            continue
        full_url = entry.get("fullUrl")
        if found.require(bool(full_url), "every entry needs a fullUrl", f"{where}.fullUrl"):
            found.require(full_url not in by_full_url, f"fullUrl {full_url} appears twice", f"{where}.fullUrl")
            by_full_url[full_url] = (i, resource)
        request = entry.get("request") or {}
        found.require(request.get("method") == "POST", "entry.request.method must be POST", f"{where}.request.method")
        {"List": lists, "DocumentReference": docrefs, "Binary": binaries}[rtype].append((i, full_url, resource))

    found.require(len(lists) == 1, "exactly one SubmissionSet List is required", "Bundle.entry")
    found.require(len(docrefs) >= 1, "at least one DocumentReference is required", "Bundle.entry")
    submission_spid = _check_submission_set(found, lists[0]) if len(lists) == 1 else None

    binary_urls = {url for _, url, _ in binaries}
    used_binaries: set[str] = set()
    for i, full_url, docref in docrefs:
        _check_document_reference(found, i, docref, submission_spid, by_full_url, binary_urls, used_binaries)
        if len(lists) == 1:
            listed = {e.get("item", {}).get("reference") for e in lists[0][2].get("entry", [])}
            found.require(full_url in listed, f"DocumentReference {full_url} is not listed in the SubmissionSet",
                          f"Bundle.entry[{lists[0][0]}].resource.entry")
    for i, full_url, _ in binaries:
        found.require(full_url in used_binaries, f"Binary {full_url} is not the content of any DocumentReference",
                      f"Bundle.entry[{i}]")
    return found.issues


def _check_spid(found: _Findings, subject: dict[str, Any] | None, where: str) -> str | None:
    if (subject or {}).get("reference") and not (subject or {}).get("identifier"):
        # CH EPR FHIR 4.0.1 referenced the patient (subject.reference); 5.0.0 names them by identifier.
        found.issues.append(Issue("subject.reference is not accepted: CH EPR FHIR 5.0.0 names the patient by "
                                  f"subject.identifier (system {SPID_SYSTEM}, the EPR-SPID); "
                                  "a 4.0.1 client must send subject.identifier instead",
                                  f"{where}.subject.reference"))
        return None
    identifier = (subject or {}).get("identifier") or {}
    ok = found.require(identifier.get("system") == SPID_SYSTEM,
                       f"subject.identifier.system must be the EPR-SPID system {SPID_SYSTEM}",
                       f"{where}.subject.identifier.system")
    value = identifier.get("value") or ""
    ok = found.require(is_spid(value), "subject.identifier.value must be an 18-digit EPR-SPID",
                       f"{where}.subject.identifier.value") and ok
    return value if ok else None


def check_submission_set(resource: dict[str, Any]) -> list[Issue]:
    """The CH MHD Comprehensive rules of a SubmissionSet List on its own: what an ITI-65 List must meet,
    and what the Lists the gateway answers (ITI-66, `List/{id}`) are held to."""
    found = _Findings()
    _check_submission_set(found, (0, resource.get("id", ""), resource), where="List")
    found.require(bool(resource.get("entry")) and all((e.get("item") or {}).get("reference") for e in resource["entry"]),
                  "a SubmissionSet lists its DocumentReferences (entry.item.reference, 1..*)", "List.entry")
    return found.issues


def _check_submission_set(found: _Findings, listed: tuple[int, str, dict[str, Any]], *,
                          where: str | None = None) -> str | None:
    i, _, resource = listed
    where = where or f"Bundle.entry[{i}].resource"
    code = first_coding(resource.get("code")) or {}
    found.require(code.get("system") == LIST_TYPES_SYSTEM and code.get("code") == "submissionset",
                  "the List must be a SubmissionSet (code submissionset); Folders are not accepted", f"{where}.code")
    found.require(resource.get("status") == "current", "SubmissionSet status must be 'current'", f"{where}.status")
    found.require(resource.get("mode") == "working", "SubmissionSet mode must be 'working'", f"{where}.mode")
    source = extension(resource, EXT_SOURCE_ID)
    source_id = (source.get("valueIdentifier") or {}).get("value") if source else None
    if found.require(bool(source_id), "extension ihe-sourceId (valueIdentifier) is required", f"{where}.extension"):
        _require_kind(found, SOURCE_ID, source_id, f"{where}.extension('{EXT_SOURCE_ID}').valueIdentifier.value")
    designation = first_coding((extension(resource, EXT_DESIGNATION_TYPE) or {}).get("valueCodeableConcept"))
    found.require(bool(designation) and designation.get("system") == SNOMED
                  and designation.get("code") == SUBMISSION_SET_DESIGNATION,
                  f"extension ihe-designationType is required and fixed to {SNOMED}|{SUBMISSION_SET_DESIGNATION}",
                  f"{where}.extension")
    _check_identifiers(found, resource, where)
    usual = [x for x in resource.get("identifier", []) if x.get("use") == "usual"]
    found.require(len(usual) == 1, "SubmissionSet needs one identifier with use=usual holding its uniqueId "
                  "(urn:oid: or urn:uuid:)", f"{where}.identifier")
    check_dates(found, resource, where, (("date", "dateTime"),))
    return _check_spid(found, resource.get("subject"), where)


def _check_document_reference(found: _Findings, i: int, doc: dict[str, Any], submission_spid: str | None,
                              by_full_url: dict, binary_urls: set[str], used_binaries: set[str]) -> None:
    where = f"Bundle.entry[{i}].resource"
    _check_identifiers(found, doc, where)
    master = doc.get("masterIdentifier") or {}
    if found.require("value" in master, "masterIdentifier (the document uniqueId, urn:oid: or urn:uuid:) is "
                     "required", f"{where}.masterIdentifier"):
        _require_kind(found, UNIQUE_ID, master["value"], f"{where}.masterIdentifier.value")
    for n, relation in enumerate(doc.get("relatesTo") or []):
        target = ((relation or {}).get("target") or {}).get("identifier") or {}
        if "value" in target:
            _require_kind(found, UNIQUE_ID, target["value"], f"{where}.relatesTo[{n}].target.identifier.value")
    check_dates(found, doc, where, DOCUMENT_DATES)
    found.require(doc.get("status") == "current", "a provided DocumentReference has status 'current'",
                  f"{where}.status")
    found.require("docStatus" not in doc, "docStatus must be absent", f"{where}.docStatus")
    found.require("custodian" not in doc, "custodian must be absent", f"{where}.custodian")
    for element in ("type",):
        found.require(bool(first_coding(doc.get(element))), f"{element} is required (SNOMED CT)", f"{where}.{element}")
    categories = doc.get("category") or []
    found.require(len(categories) == 1 and bool(first_coding(categories[0])),
                  "exactly one category (classCode) is required", f"{where}.category")
    spid = _check_spid(found, doc.get("subject"), where)
    if spid and submission_spid:
        found.require(spid == submission_spid, "DocumentReference and SubmissionSet name different patients",
                      f"{where}.subject")
    labels = [c.get("code") for label in doc.get("securityLabel", []) for c in label.get("coding", [])
              if c.get("system") == SNOMED]
    found.require(any(code in CONFIDENTIALITY_CODES for code in labels),
                  "securityLabel must carry a confidentiality code (SNOMED 17621005, 263856008 or 1141000195107)",
                  f"{where}.securityLabel")
    role = (extension(doc, EXT_AUTHOR_ROLE) or {}).get("valueCoding") or {}
    found.require(role.get("system") == ROLE_SYSTEM and role.get("code") in ROLES,
                  f"extension originalProviderRole ({EXT_AUTHOR_ROLE}) is required (CH MHD): {provider_role_rule()}",
                  f"{where}.extension")
    context = doc.get("context") or {}
    for element in ("facilityType", "practiceSetting"):
        found.require(bool(first_coding(context.get(element))), f"context.{element} is required",
                      f"{where}.context.{element}")
    _check_source_patient(found, doc, context, where)

    contents = doc.get("content") or []
    if not found.require(len(contents) == 1, "exactly one content is required", f"{where}.content"):
        return
    content = contents[0]
    attachment = content.get("attachment") or {}
    for element in ("contentType", "language", "url", "title", "creation"):
        found.require(bool(attachment.get(element)), f"content.attachment.{element} is required",
                      f"{where}.content[0].attachment.{element}")
    found.require("data" not in attachment, "content.attachment.data must be absent: the bytes travel in a Binary",
                  f"{where}.content[0].attachment.data")
    if attachment.get("contentType"):
        found.require(is_media_type(attachment["contentType"]),
                      "content.attachment.contentType must be a MIME type (type/subtype[; name=value])",
                      f"{where}.content[0].attachment.contentType")
    found.require(bool(content.get("format") and content["format"].get("code")),
                  "content.format (formatCode) is required", f"{where}.content[0].format")
    url = attachment.get("url")
    if url and found.require(url in binary_urls, f"attachment.url {url} does not point to a Binary in the Bundle",
                             f"{where}.content[0].attachment.url"):
        found.require(url not in used_binaries, f"Binary {url} is the content of two DocumentReferences",
                      f"{where}.content[0].attachment.url")
        used_binaries.add(url)
        _check_binary(found, attachment, by_full_url[url][1], f"{where}.content[0].attachment")


def _check_identifiers(found: _Findings, resource: dict[str, Any], where: str) -> None:
    """Every identifier of the resource and of what it contains (authors, source patient) in its
    system's syntax: a GLN in full-width digits is another string for the same professional. The
    resource's own uniqueId (use usual) and entryUUID (use official) are checked as those kinds."""
    contained = resource.get("contained") or []
    owners = [(where, resource)] + [(f"{where}.contained[{n}]", c) for n, c in enumerate(contained)
                                    if isinstance(c, dict)]
    for path, owner in owners:
        identifiers = owner.get("identifier") or []
        for n, identifier in enumerate(identifiers if isinstance(identifiers, list) else []):
            if isinstance(identifier, dict) and "value" in identifier:
                kind = IDENTIFIER_KINDS.get(identifier.get("use")) if owner is resource else None
                problem = kind.problem(identifier["value"]) if kind else identifier_problem(
                    identifier.get("system", ""), identifier["value"])
                found.require(problem is None, problem or "", f"{path}.identifier[{n}]")


def _require_kind(found: _Findings, kind: IdentifierKind, value: object, location: str) -> None:
    problem = kind.problem(value)
    found.require(problem is None, problem or "", location)


def check_dates(found: _Findings, resource: dict[str, Any], where: str, dates: tuple[tuple[str, str], ...]) -> None:
    """Each date of `resource` read by the gateway's one parser: FHIR R4 accepts `2016-12-31T23:59:60Z`
    and `9999-12-31T23:59:59-12:00`, the record cannot hold the second (it outlives year 9999 in UTC).
    A period's start must not follow its end (FHIR per-1)."""
    moments = {}
    for path, kind in dates:
        value = _at(resource, path)
        if value is None:
            continue
        try:
            moments[path] = parse_fhir(value, kind=kind)
        except InvalidDate as refused:
            found.issues.append(Issue(f"{path}: {refused.reason}", f"{where}.{path}"))
    start, end = moments.get("context.period.start"), moments.get("context.period.end")
    if start is not None and end is not None:
        found.require(start.start <= end.start, "context.period.start is after context.period.end",
                      f"{where}.context.period")


def normalised_date(value: str | None, kind: str) -> str | None:
    """A date the rules above accepted, as the record keeps it (a leap second as second 59)."""
    return None if value is None else parse_fhir(value, kind=kind).fhir()


def _at(resource: dict[str, Any], path: str) -> Any:
    value: Any = resource
    for step in path.split("."):
        name, _, index = step.partition("[")
        value = value.get(name) if isinstance(value, dict) else None
        if index and isinstance(value, list):
            value = value[int(index[:-1])] if len(value) > int(index[:-1]) else None
    return value


def _check_source_patient(found: _Findings, doc: dict[str, Any], context: dict[str, Any], where: str) -> None:
    reference = (context.get("sourcePatientInfo") or {}).get("reference") or ""
    if not found.require(reference.startswith("#"), "context.sourcePatientInfo must reference a contained Patient",
                         f"{where}.context.sourcePatientInfo"):
        return
    patient = next((c for c in doc.get("contained", []) if c.get("id") == reference[1:]), None)
    if not found.require(patient is not None and patient.get("resourceType") == "Patient",
                         f"contained Patient {reference} not found", f"{where}.context.sourcePatientInfo"):
        return
    found.require(any(x.get("use") == "usual" and x.get("value") for x in patient.get("identifier", [])),
                  "the sourcePatientInfo Patient needs an identifier with use=usual (the local id)",
                  f"{where}.contained")


def _check_binary(found: _Findings, attachment: dict[str, Any], binary: dict[str, Any], where: str) -> None:
    try:
        content = decode_binary(binary.get("data") or "")
    except (binascii.Error, ValueError):
        found.issues.append(Issue("Binary.data is not valid base64", where.replace(".attachment", "")))
        return
    problem = content_problem(content)
    found.require(problem is None, problem or "", where)
    found.require(binary.get("contentType") == attachment.get("contentType"),
                  "Binary.contentType differs from attachment.contentType", f"{where}.contentType")
    if "size" in attachment:
        found.require(attachment["size"] == len(content),
                      f"attachment.size {attachment['size']} does not match the Binary ({len(content)} bytes)",
                      f"{where}.size")
    if "hash" in attachment:
        expected = base64.b64encode(hashlib.sha1(content).digest()).decode()
        found.require(attachment["hash"] == expected, "attachment.hash does not match the SHA-1 of the Binary",
                      f"{where}.hash")
