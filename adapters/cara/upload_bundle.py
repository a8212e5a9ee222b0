"""One document described by a form (the professionals' page) as the CH MHD Comprehensive ITI-65 Provide
Document Bundle a practice system would send for it: so the page's uploads go through the ITI-65
use-case whole (its parsing, its profile rules, the provide level and the write decision), not beside it.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from adapters.cara.model import Code
from adapters.cara.vocabulary import (
    CONFIDENTIALITY_DISPLAY,
    EXT_AUTHOR_ROLE,
    EXT_DESIGNATION_TYPE,
    EXT_SOURCE_ID,
    FORMAT_CODE_SYSTEM,
    GLN_SYSTEM,
    LIST_TYPES_SYSTEM,
    RFC3986,
    ROLE_SYSTEM,
    SNOMED,
    SPID_SYSTEM,
)

PDF = "application/pdf"
PDF_FORMAT = "urn:che:epr:EPR_Unstructured_Document"


@dataclass(frozen=True)
class Upload:
    """What the form says of the document."""

    content: bytes
    title: str
    type_code: Code
    class_code: Code
    facility_type: Code
    practice_setting: Code
    date: str  # the document's date, YYYY-MM-DD
    language: str  # BCP 47, e.g. fr-CH
    confidentiality: str  # normal | restricted | secret
    replaces: str | None = None  # the DocumentReference id of the version it replaces (RPLC)


@dataclass(frozen=True)
class UploadAuthor:
    """The professional who authors it (an assistant uploads for the professional they work for)."""

    gln: str
    name: str | None
    organisation: str | None = None
    organisation_id: str | None = None


def upload_bundle(upload: Upload, *, spid: str, author: UploadAuthor, submitter_role: str, source_id: str,
                  source_patient: dict[str, Any], now: str) -> dict[str, Any]:
    """The ITI-65 Bundle. `source_patient`: the contained Patient of sourcePatientInfo (an identifier with
    use=usual); `now`: the submission time (FHIR dateTime); `submitter_role`: the originalProviderRole, the
    role of whoever submits (the gateway checks it against the principal)."""
    subject = {"identifier": {"system": SPID_SYSTEM, "value": spid}}
    document_url, binary_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    level, level_display = CONFIDENTIALITY_DISPLAY[upload.confidentiality]
    practitioner = {"resourceType": "Practitioner", "id": "author",
                    "identifier": [{"system": GLN_SYSTEM, "value": author.gln}]}
    if author.name:
        practitioner["name"] = [human_name(author.name)]
    contained = [{"resourceType": "Patient", "id": "src", **source_patient}, practitioner]
    authors = [{"reference": "#author"}]
    if author.organisation:
        organisation = {"resourceType": "Organization", "id": "institution", "name": author.organisation}
        if author.organisation_id:
            organisation["identifier"] = [{"system": RFC3986, "value": author.organisation_id}]
        contained.append(organisation)
        authors.append({"reference": "#institution"})
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "contained": contained,
        "extension": [{"url": EXT_AUTHOR_ROLE, "valueCoding": {"system": ROLE_SYSTEM, "code": submitter_role}}],
        "masterIdentifier": {"system": RFC3986, "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [upload.type_code.as_coding()]},
        "category": [{"coding": [upload.class_code.as_coding()]}],
        "subject": subject,
        "date": now,
        "author": authors,
        "securityLabel": [{"coding": [{"system": SNOMED, "code": level, "display": level_display}]}],
        "content": [{
            "attachment": {"contentType": PDF, "language": upload.language, "url": binary_url,
                           "size": len(upload.content),
                           "hash": base64.b64encode(hashlib.sha1(upload.content).digest()).decode(),
                           "title": upload.title, "creation": upload.date},
            "format": {"system": FORMAT_CODE_SYSTEM, "code": PDF_FORMAT},
        }],
        "context": {"facilityType": {"coding": [upload.facility_type.as_coding()]},
                    "practiceSetting": {"coding": [upload.practice_setting.as_coding()]},
                    "sourcePatientInfo": {"reference": "#src"}},
    }
    if upload.replaces:
        document["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{upload.replaces}"}}]
    submission = {
        "resourceType": "List",
        "extension": [
            {"url": EXT_DESIGNATION_TYPE, "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "71388002"}]}},
            {"url": EXT_SOURCE_ID, "valueIdentifier": {"system": RFC3986, "value": source_id}},
        ],
        "identifier": [{"use": "usual", "system": RFC3986, "value": f"urn:uuid:{uuid.uuid4()}"}],
        "status": "current", "mode": "working", "date": now, "subject": subject,
        "code": {"coding": [{"system": LIST_TYPES_SYSTEM, "code": "submissionset"}]},
        "entry": [{"item": {"reference": document_url}}],
    }
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": submission, "request": {"method": "POST", "url": "List"}},
        {"fullUrl": document_url, "resource": document, "request": {"method": "POST", "url": "DocumentReference"}},
        {"fullUrl": binary_url, "resource": {"resourceType": "Binary", "contentType": PDF,
                                            "data": base64.b64encode(upload.content).decode()},
         "request": {"method": "POST", "url": "Binary"}}]}


def human_name(text: str) -> dict[str, Any]:
    """A person's name as the identity provider gives it ("Dr. Luc Favre") as a HumanName: the text as
    given, a leading title as prefix, the last word as family name (what `author.family` searches)."""
    words = text.split()
    prefix = [w for w in words[:1] if w.endswith(".") and len(words) > 1]
    rest = words[len(prefix):]
    name: dict[str, Any] = {"text": text, "family": rest[-1]}
    if rest[:-1]:
        name["given"] = rest[:-1]
    if prefix:
        name["prefix"] = prefix
    return name
