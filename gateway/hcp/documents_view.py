"""What the professionals' page shows of a DocumentReference (as ITI-67 answers it): its title, type and
class in the page's language (the CH value sets' names), its date, authors and institutions, its level."""

from __future__ import annotations

from datetime import date
from typing import Any

from adapters.cara import value_sets
from adapters.cara.dates import InvalidDate, parse_full_date

LEVELS = {"17621005": "normal", "263856008": "restricted", "1141000195107": "secret"}


def document_row(resource: dict[str, Any], lang: str) -> dict[str, Any]:
    type_coding = (resource.get("type", {}).get("coding") or [{}])[0]
    class_coding = ((resource.get("category") or [{}])[0].get("coding") or [{}])[0]
    contained = {c.get("id"): c for c in resource.get("contained", [])}
    authors, institutions = [], []
    for author in resource.get("author", []):
        found = contained.get((author.get("reference") or "").lstrip("#"), {})
        if found.get("resourceType") == "Organization":
            institutions.append(found.get("name", ""))
        for name in found.get("name", []) if found.get("resourceType") == "Practitioner" else []:
            authors.append(name.get("text") or " ".join([*name.get("prefix", []), *name.get("given", []),
                                                         name.get("family", "")]).strip())
    attachment = (resource.get("content") or [{}])[0].get("attachment", {})
    level = next((LEVELS[c["code"]] for s in resource.get("securityLabel", []) for c in s.get("coding", [])
                  if c.get("code") in LEVELS), "normal")
    return {"id": resource["id"], "title": attachment.get("title") or _named("type", type_coding, lang),
            "type": _named("type", type_coding, lang), "class": _named("class", class_coding, lang),
            "date": _day((attachment.get("creation") or resource.get("date") or "")[:10]),
            "authors": ", ".join(a for a in authors if a), "institutions": [i for i in institutions if i],
            "level": level, "content_type": attachment.get("contentType", "")}


def institutions_of(rows: list[dict[str, Any]]) -> list[str]:
    """The author institutions of these documents, each once, in alphabetical order (the filter's choices)."""
    return sorted({i for row in rows for i in row["institutions"]}, key=str.casefold)


def _named(kind: str, coding: dict[str, Any], lang: str) -> str:
    concept = value_sets.concept(kind, coding.get("code", ""))
    return concept.name(lang) if concept else coding.get("display") or coding.get("code", "")


def _day(value: str) -> date | None:
    try:
        return parse_full_date(value) if value else None
    except InvalidDate:
        return None
