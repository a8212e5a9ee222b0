"""The record's model → a CH MHD Comprehensive Provide Document Bundle (ITI-65) for a remote MHD
Document Recipient: the reverse of `adapters/cara/fhir_mapping.submission_from_bundle`, through its
outbound half (`document_reference`), with what a provide needs that a search answer does not.

What the recipient keeps and what it decides:
- The ids the gateway assigned and keeps are sent as the recipient keeps them: the submission set's
  stable uniqueId (`List.identifier` usual) and entryUUID (official), each document's entryUUID
  (`DocumentReference.identifier` official, urn:uuid) and uniqueId (`masterIdentifier`). The fullUrls
  are derived from the entryUUIDs, so every attempt of one submission is the same Bundle but for the
  confidentiality (the attempt's level, never below a document's own).
- The recipient sets `originalProviderRole` from the token, never from the request (and refuses another
  role): the technical user's token says TCU, so TCU is sent.
- A replacement names its original as the recipient knows it: by the literal reference the recipient
  answered when the original was delivered (`DocumentReference/<id>`, `OutgoingRelation.target_reference`),
  which is what a FHIR server resolves and what an MHD front of an XDS registry maps back to the entryUUID.
  Without it, by the original's entryUUID as `Reference.identifier` (the original's official identifier).
- `sourcePatientInfo` is required: the document's own, completed from the MPI's demographics when it
  lacks a name; one is built from the document's local patient id when it has none. No local id at all:
  `MetadataNotSendable`, as nothing else would be sent under a made-up id.

Every Bundle is checked against the project's CH MHD rules (`mhd_rules.check_provide_bundle`) before it
leaves: what the recipient would refuse is refused here, with the same findings.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters.cara.fhir_mapping import document_reference
from adapters.cara.mhd_rules import check_provide_bundle
from adapters.cara.model import Code
from adapters.cara.vocabulary import (
    EXT_AUTHOR_ROLE,
    EXT_DESIGNATION_TYPE,
    EXT_SOURCE_ID,
    LIST_TYPES_SYSTEM,
    PROFILE_DOCREF,
    PROFILE_SUBMISSIONSET,
    RFC3986,
    ROLE_SYSTEM,
    SNOMED,
    SPID_SYSTEM,
    SUBMISSION_SET_DESIGNATION,
)
from adapters.community.ebrim import Demographics, MetadataNotSendable, OutgoingDocument, OutgoingRelation

PROFILE_PROVIDE_BUNDLE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-mhd-providedocumentbundle-comprehensive"
SUBMITTER_ROLE = Code(ROLE_SYSTEM, "TCU", "Technical user")
_FULL_URLS = uuid.UUID("3f0b6c1e-5a2d-5e8f-9c47-1d2e3f4a5b6c")  # namespace of the fullUrls derived here


@dataclass(frozen=True)
class MhdSubmission:
    """One attempt of one submission, in the terms of the Bundle."""

    spid: str  # the patient, as the recipient names them (CH EPR FHIR 5: subject.identifier)
    submission_set_unique_id: str  # urn:oid:…, urn:uuid:… or a plain OID (→ urn:oid:)
    submission_set_entry_uuid: str  # urn:uuid:…
    source_id: str  # urn:oid:… or a plain OID: the ihe-sourceId
    submission_time: datetime
    title: str | None
    documents: tuple[OutgoingDocument, ...]
    confidentiality: str  # normal | restricted | secret: every document's level in this attempt
    demographics: Demographics


def build_bundle(submission: MhdSubmission) -> bytes:
    """The Bundle's JSON, or MetadataNotSendable naming what the CH MHD rules (or the gateway) refuse."""
    bundle = provide_bundle(submission)
    issues = check_provide_bundle(bundle)
    if issues:
        found = "; ".join(f"{issue.message} (at {issue.location})" if issue.location else issue.message
                          for issue in issues[:10])
        raise MetadataNotSendable(f"the Bundle breaks the CH MHD rules: {found}")
    return orjson.dumps(bundle)


def provide_bundle(submission: MhdSubmission) -> dict[str, Any]:
    """The Bundle as a dict: the SubmissionSet List, then each DocumentReference and its Binary."""
    if not submission.documents:
        raise MetadataNotSendable("a submission without documents cannot be provided")
    entries: list[dict[str, Any]] = []
    listed = []
    for outgoing in submission.documents:
        document_url = _full_url(outgoing.entry_uuid, "DocumentReference")
        binary_url = _full_url(outgoing.entry_uuid, "Binary")
        listed.append({"item": {"reference": document_url}})
        content = outgoing.document.content
        entries.append({"fullUrl": document_url, "resource": _document_reference(submission, outgoing, binary_url),
                        "request": {"method": "POST", "url": "DocumentReference"}})
        entries.append({"fullUrl": binary_url,
                        "resource": {"resourceType": "Binary", "contentType": outgoing.document.entry.mime_type,
                                     "data": base64.b64encode(content).decode("ascii")},
                        "request": {"method": "POST", "url": "Binary"}})
    submission_set = _submission_set(submission, listed)
    first = {"fullUrl": _full_url(submission.submission_set_entry_uuid, "List"), "resource": submission_set,
             "request": {"method": "POST", "url": "List"}}
    return {"resourceType": "Bundle", "meta": {"profile": [PROFILE_PROVIDE_BUNDLE]}, "type": "transaction",
            "entry": [first, *entries]}


def _submission_set(submission: MhdSubmission, listed: list[dict[str, Any]]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "List",
        "meta": {"profile": [PROFILE_SUBMISSIONSET]},
        "extension": [
            {"url": EXT_DESIGNATION_TYPE,
             "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": SUBMISSION_SET_DESIGNATION,
                                                  "display": "Procedure (procedure)"}]}},
            {"url": EXT_SOURCE_ID, "valueIdentifier": {"system": RFC3986, "value": urn_oid(submission.source_id)}},
            {"url": EXT_AUTHOR_ROLE, "valueCoding": SUBMITTER_ROLE.as_coding()},
        ],
        "identifier": [
            {"use": "usual", "system": RFC3986, "value": urn_oid(submission.submission_set_unique_id)},
            {"use": "official", "system": RFC3986, "value": submission.submission_set_entry_uuid},
        ],
        "status": "current",
        "mode": "working",
    }
    if submission.title:
        resource["title"] = submission.title
    resource.update({
        "code": {"coding": [{"system": LIST_TYPES_SYSTEM, "code": "submissionset",
                             "display": "SubmissionSet as a FHIR List"}]},
        "subject": {"identifier": {"system": SPID_SYSTEM, "value": submission.spid}},
        "date": submission.submission_time.astimezone(UTC).isoformat(timespec="seconds"),
        "entry": listed,
    })
    return resource


def _document_reference(submission: MhdSubmission, outgoing: OutgoingDocument, binary_url: str) -> dict[str, Any]:
    entry = outgoing.document.entry.with_confidentiality_level(submission.confidentiality)
    source_patient = _source_patient(outgoing, submission.demographics)
    resource = document_reference(entry, spid=submission.spid, base_url="")
    del resource["id"]
    resource["meta"] = {"profile": [PROFILE_DOCREF]}
    contained = [c for c in resource.get("contained", []) if c is not entry.source_patient]
    resource["contained"] = [source_patient, *contained]
    others = [e for e in resource["extension"] if e.get("url") != EXT_AUTHOR_ROLE]
    resource["extension"] = [{"url": EXT_AUTHOR_ROLE, "valueCoding": SUBMITTER_ROLE.as_coding()}, *others]
    resource["identifier"] = [{"use": "official", "system": RFC3986, "value": outgoing.entry_uuid}]
    resource["status"] = "current"  # as provided: a later replacement at home does not travel with it
    if outgoing.relations:
        resource["relatesTo"] = [_relates_to(relation) for relation in outgoing.relations]
    else:
        resource.pop("relatesTo", None)
    content = outgoing.document.content
    attachment = resource["content"][0]["attachment"]
    attachment.update(url=binary_url, size=len(content),
                      hash=base64.b64encode(hashlib.sha1(content).digest()).decode("ascii"))
    resource["context"]["sourcePatientInfo"] = {"reference": f"#{source_patient['id']}"}
    return _ordered(resource)


def _relates_to(relation: OutgoingRelation) -> dict[str, Any]:
    if relation.target_reference:
        return {"code": relation.code, "target": {"reference": relation.target_reference}}
    return {"code": relation.code,
            "target": {"identifier": {"system": RFC3986, "value": relation.target_entry_uuid}}}


def _source_patient(outgoing: OutgoingDocument, demographics: Demographics) -> dict[str, Any]:
    """The contained sourcePatientInfo: the document's own (completed), or one from its local id."""
    entry = outgoing.document.entry
    patient = dict(entry.source_patient) if entry.source_patient else None
    if patient is None:
        local = entry.source_patient_id
        if local is None:
            raise MetadataNotSendable(f"document {entry.unique_id}: no local patient id for sourcePatientInfo")
        patient = {"resourceType": "Patient", "id": "src",
                   "identifier": [{"use": "usual", "system": local.system, "value": local.value}]}
    if not patient.get("name") and demographics.family:
        patient["name"] = [{"family": demographics.family, **({"given": list(demographics.given)}
                                                              if demographics.given else {})}]
    if not patient.get("birthDate") and demographics.birth_date:
        patient["birthDate"] = demographics.birth_date
    if not patient.get("gender") and demographics.gender:
        patient["gender"] = demographics.gender
    return patient


_ORDER = ("resourceType", "meta", "contained", "extension", "masterIdentifier", "identifier", "status", "type",
          "category", "subject", "date", "author", "description", "relatesTo", "securityLabel", "content", "context")


def _ordered(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements in the order of the FHIR definition (readable, and what validators expect)."""
    return {name: resource[name] for name in _ORDER if name in resource} | {
        name: value for name, value in resource.items() if name not in _ORDER}


def _full_url(entry_uuid: str, kind: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_FULL_URLS, f'{kind}|{entry_uuid}')}"


def urn_oid(value: str) -> str:
    """A uniqueId as FHIR writes it: a plain OID gets its `urn:oid:` prefix."""
    return value if value.startswith(("urn:oid:", "urn:uuid:")) else f"urn:oid:{value}"
