"""What the page shows of a DocumentReference: the type (a catalogue message, see `document_types`),
the date, who wrote it and for which institution, its confidentiality and how it is opened.

One name per professional: a GLN the directory knows is shown under the directory's name and
institution wherever the page names it (documents, sharing, trail, notices); the record's own words
only for a GLN the directory does not know. The institution is an author's organisation (from the
record, else the directory) — never the facility *type* ("Hospital"), which names no institution.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from adapters.cara.dates import InvalidDate, parse_full_date
from gateway.http.document_headers import INLINE_TYPES
from gateway.portal.directory import Directory
from gateway.portal.document_types import OTHER, type_label

GLN_SYSTEM = "urn:oid:2.51.1.3"
LEVELS = {"17621005": "normal", "263856008": "restricted", "1141000195107": "secret"}


def document_row(resource: dict[str, Any], *, directory: Directory) -> dict[str, Any]:
    type_coding = (resource.get("type", {}).get("coding") or [{}])[0]
    label = type_label(type_coding.get("system"), type_coding.get("code"))
    authors, institutions = _authors(resource, directory)
    level = next((LEVELS[c["code"]] for s in resource.get("securityLabel", []) for c in s.get("coding", [])
                       if c.get("code") in LEVELS), "normal")
    attachment = (resource.get("content") or [{}])[0].get("attachment", {})
    when = resource.get("date") or attachment.get("creation") or ""
    kind = (attachment.get("contentType") or "").split(";")[0].strip().lower()
    return {"id": resource["id"], "type": label or OTHER,
            "type_as_sent": None if label else (type_coding.get("display") or type_coding.get("code") or ""),
            "date": day(when[:10]), "authors": ", ".join(authors), "institution": ", ".join(institutions),
            "level": level, "content_type": kind, "inline": kind in INLINE_TYPES}


def _authors(resource: dict[str, Any], directory: Directory) -> tuple[list[str], list[str]]:
    """(names, institutions) of the authors, each once, in the record's order."""
    contained = {c.get("id"): c for c in resource.get("contained", [])}
    names: list[str] = []
    institutions: list[str] = []
    for author in resource.get("author", []):
        found = contained.get((author.get("reference") or "").lstrip("#"), {})
        person, organisation = found, None
        if found.get("resourceType") == "PractitionerRole":
            person = contained.get(((found.get("practitioner") or {}).get("reference") or "").lstrip("#"), {})
            organisation = contained.get(((found.get("organization") or {}).get("reference") or "").lstrip("#"))
        elif found.get("resourceType") == "Organization":
            person, organisation = {}, found
        gln = next((i.get("value") for i in person.get("identifier", []) if i.get("system") == GLN_SYSTEM), None)
        name = directory.name_of(gln) or person_name(person)
        institution = (organisation or {}).get("name") or directory.organisation_of(gln)
        for value, bucket in ((name, names), (institution, institutions)):
            if value and value not in bucket:
                bucket.append(value)
    return names, institutions


def person_name(resource: dict[str, Any]) -> str:
    for name in resource.get("name", []):
        text = " ".join(p for p in [*name.get("prefix", []), *name.get("given", []), name.get("family", "")] if p)
        if text:
            return text
    return ""


def day(value: str | None) -> date | None:
    """A served date's first ten characters as a date (the one date parser), else None."""
    try:
        return parse_full_date(value) if value else None
    except InvalidDate:
        return None
