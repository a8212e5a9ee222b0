"""Whom a patient can choose from when granting access: the authors already in their record, and a
configured directory file of professionals and groups (`EPR_PORTAL_DIRECTORY`).

The file is JSON, checked when the gateway starts (a bad GLN or group id stops it, rather than
offering a choice that the policy rules would refuse later):

    {"professionals": [{"gln": "7601000000002", "name": "Dr. Demo Favre", "organisation": "Hôpital de Sion"}],
     "groups": [{"id": "urn:oid:2.16.756.5.30.1.999.7.1", "name": "Hôpital de Sion, médecine interne"}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.cara.identifier_syntax import is_oid_urn
from consent.policies import is_valid_gln



@dataclass(frozen=True)
class Professional:
    gln: str
    name: str
    organisation: str = ""


@dataclass(frozen=True)
class Group:
    id: str
    name: str


@dataclass(frozen=True)
class Directory:
    professionals: tuple[Professional, ...] = ()
    groups: tuple[Group, ...] = ()

    def name_of(self, subject_id: str | None) -> str | None:
        for professional in self.professionals:
            if professional.gln == subject_id:
                return professional.name
        for group in self.groups:
            if group.id == subject_id:
                return group.name
        return None

    def with_authors(self, authors: list[Professional]) -> Directory:
        """The directory plus the record's authors not yet in it (authors first: the patient knows them)."""
        known = {p.gln for p in self.professionals}
        extra = tuple(dict.fromkeys(a for a in authors if a.gln not in known))
        return Directory(professionals=extra + self.professionals, groups=self.groups)


class DirectoryInvalid(ValueError):
    pass


def load_directory(path: Path | None) -> Directory:
    if path is None:
        return Directory()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DirectoryInvalid(f"EPR_PORTAL_DIRECTORY {path}: {error}") from None
    return Directory(professionals=tuple(_professional(p, i) for i, p in enumerate(data.get("professionals", []))),
                     groups=tuple(_group(g, i) for i, g in enumerate(data.get("groups", []))))


def _professional(entry: Any, index: int) -> Professional:
    if not isinstance(entry, dict) or not is_valid_gln(str(entry.get("gln", ""))) or not entry.get("name"):
        raise DirectoryInvalid(f"professionals[{index}] needs a valid GLN (13 digits, GS1 check digit) and a name")
    return Professional(gln=entry["gln"], name=str(entry["name"]), organisation=str(entry.get("organisation", "")))


def _group(entry: Any, index: int) -> Group:
    if not isinstance(entry, dict) or not is_oid_urn(str(entry.get("id", ""))) or not entry.get("name"):
        raise DirectoryInvalid(f"groups[{index}] needs an id urn:oid:… and a name")
    return Group(id=entry["id"], name=str(entry["name"]))


def authors_of(document_references: list[dict[str, Any]]) -> list[Professional]:
    """The professionals (with a GLN) who authored the documents of an ITI-67 answer."""
    found = []
    for resource in document_references:
        contained = {c.get("id"): c for c in resource.get("contained", [])}
        for author in resource.get("author", []):
            practitioner = contained.get((author.get("reference") or "").lstrip("#")) or {}
            gln = next((i.get("value") for i in practitioner.get("identifier", [])
                        if i.get("system") == "urn:oid:2.51.1.3"), None)
            if gln and is_valid_gln(gln):
                found.append(Professional(gln=gln, name=_name(practitioner) or gln))
    return found


def _name(practitioner: dict[str, Any]) -> str:
    for name in practitioner.get("name", []):
        parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return ""
