"""Sample content for the embedded default's demonstration data and the benchmark: real PDFs and
CH MHD Comprehensive Provide Document Bundles built the way a hospital system would send them."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from adapters.cara.vocabulary import (
    CONFIDENTIALITY_DISPLAY,
    EXT_AUTHOR_ROLE,
    EXT_DESIGNATION_TYPE,
    EXT_SOURCE_ID,
    FORMAT_CODE_SYSTEM,
    LIST_TYPES_SYSTEM,
    RFC3986,
    ROLE_SYSTEM,
    SNOMED,
    SPID_SYSTEM,
)


def pdf_document(title: str, lines: list[str]) -> bytes:
    """A small valid PDF 1.4 with one page of text (real xref table, so readers open it)."""
    text = ["BT", "/F1 16 Tf", "50 780 Td", f"({_pdf_escape(title)}) Tj", "/F1 10 Tf"]
    for line in lines:
        text += ["0 -14 Td", f"({_pdf_escape(line)}) Tj"]
    stream = "\n".join(text + ["ET"]).encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _pdf_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def new_oid_unique_id() -> str:
    return f"urn:oid:2.25.{uuid.uuid4().int}"


def provide_bundle(*, spid: str, documents: list[dict[str, Any]], source_id: str = "urn:oid:2.16.756.5.30.1.999.9",
                   author_role: str = "HCP", submission_unique_id: str | None = None) -> dict[str, Any]:
    """An ITI-65 Bundle. Each document: content (bytes), title, and optionally unique_id, mime_type,
    confidentiality (normal/restricted/secret), type_code/type_display, class_code/class_display, local_id,
    patient_family/given,
    author_family/given/gln, author_institution ((name, OID): the author as a PractitionerRole of that
    organisation, as a community wants it), replaces (entry id), date."""
    subject = {"identifier": {"system": SPID_SYSTEM, "value": spid}}
    role = {"system": ROLE_SYSTEM, "code": author_role}
    entries: list[dict[str, Any]] = []
    list_items = []
    for doc in documents:
        doc_url, binary_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        list_items.append({"item": {"reference": doc_url}})
        entries.append(_document_entry(doc, doc_url, binary_url, subject, role))
        entries.append({
            "fullUrl": binary_url,
            "resource": {"resourceType": "Binary", "contentType": doc.get("mime_type", "application/pdf"),
                         "data": base64.b64encode(doc["content"]).decode()},
            "request": {"method": "POST", "url": "Binary"},
        })
    submission = {
        "resourceType": "List",
        "extension": [
            {"url": EXT_DESIGNATION_TYPE, "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "71388002"}]}},
            {"url": EXT_SOURCE_ID, "valueIdentifier": {"system": RFC3986, "value": source_id}},
        ],
        "identifier": [{"use": "usual", "system": RFC3986, "value": submission_unique_id or new_oid_unique_id()}],
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": LIST_TYPES_SYSTEM, "code": "submissionset"}]},
        "subject": subject,
        "date": "2026-11-20T10:00:00+01:00",
        "entry": list_items,
    }
    list_entry = {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": submission,
                  "request": {"method": "POST", "url": "List"}}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [list_entry, *entries]}


def _document_entry(doc: dict[str, Any], doc_url: str, binary_url: str, subject: dict, role: dict) -> dict[str, Any]:
    content: bytes = doc["content"]
    level = doc.get("confidentiality", "normal")
    code, display = CONFIDENTIALITY_DISPLAY[level]
    patient = {"resourceType": "Patient", "id": "src",
               "identifier": [{"use": "usual", "system": "urn:oid:2.16.756.5.30.1.999.2.1",
                               "value": doc.get("local_id", "L-1")}],
               "name": [{"family": doc.get("patient_family", "Muster"), "given": [doc.get("patient_given", "Anna")]}]}
    author = {"resourceType": "Practitioner", "id": "author",
              "identifier": [{"system": "urn:oid:2.51.1.3", "value": doc.get("author_gln", "7601000000002")}],
              "name": [{"family": doc.get("author_family", "Favre"), "given": [doc.get("author_given", "Luc")]}]}
    contained = [patient, author]
    if doc.get("author_institution"):
        name, oid = doc["author_institution"]
        author = {**author, "id": "author-person"}
        organization = {"resourceType": "Organization", "id": "author-org", "name": name,
                        "identifier": [{"system": RFC3986, "value": f"urn:oid:{oid}"}]}
        contained = [patient, author, organization,
                     {"resourceType": "PractitionerRole", "id": "author", "practitioner": {"reference": "#author-person"},
                      "organization": {"reference": "#author-org"}}]
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "contained": contained,
        "extension": [{"url": EXT_AUTHOR_ROLE, "valueCoding": role}],
        "masterIdentifier": {"system": RFC3986, "value": doc.get("unique_id") or new_oid_unique_id()},
        "status": "current",
        "type": {"coding": [{"system": SNOMED, "code": doc.get("type_code", "373942005"),
                             "display": doc.get("type_display", "Discharge summary")}]},
        "category": [{"coding": [{"system": SNOMED, "code": doc.get("class_code", "371531000"),
                                  "display": doc.get("class_display", "Report of clinical encounter")}]}],
        "subject": subject,
        "date": doc.get("date", "2026-11-20T10:00:00+01:00"),
        "author": [{"reference": "#author"}],
        "securityLabel": [{"coding": [{"system": SNOMED, "code": code, "display": display}]}],
        "content": [{
            "attachment": {
                "contentType": doc.get("mime_type", "application/pdf"),
                "language": "fr-CH",
                "url": binary_url,
                "size": len(content),
                "hash": base64.b64encode(hashlib.sha1(content).digest()).decode(),
                "title": doc["title"],
                "creation": "2026-11-20T09:30:00+01:00",
            },
            "format": {"system": FORMAT_CODE_SYSTEM, "code": "urn:che:epr:EPR_Unstructured_Document"},
        }],
        "context": {
            "facilityType": {"coding": [{"system": SNOMED, "code": "22232009", "display": "Hospital"}]},
            "practiceSetting": {"coding": [{"system": SNOMED, "code": "394802001", "display": "General medicine"}]},
            "sourcePatientInfo": {"reference": "#src"},
        },
    }
    if doc.get("replaces"):
        resource["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{doc['replaces']}"}}]
    return {"fullUrl": doc_url, "resource": resource, "request": {"method": "POST", "url": "DocumentReference"}}


def patient_feed(*, spid: str, local_system: str, local_id: str, family: str, given: str,
                 birth_date: str, gender: str) -> dict[str, Any]:
    """An ITI-104 Patient body."""
    return {
        "resourceType": "Patient",
        "identifier": [{"system": local_system, "value": local_id}, {"system": SPID_SYSTEM, "value": spid}],
        "name": [{"family": family, "given": [given]}],
        "birthDate": birth_date,
        "gender": gender,
    }
