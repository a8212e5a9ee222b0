"""Whom a patient can choose from when granting access: the authors already in their record, and a
configured directory file of professionals, groups and representatives (`EPR_PORTAL_DIRECTORY`).

The file is JSON, checked when the gateway starts (a bad GLN or group id stops it, rather than
offering a choice that the policy rules would refuse later):

    {"professionals": [{"gln": "7601000000002", "name": "Dr. Demo Favre", "organisation": "Hôpital de Sion"}],
     "groups": [{"id": "urn:oid:2.16.756.5.30.1.999.7.1", "name": "Hôpital de Sion, médecine interne"}],
     "representatives": [{"id": "rep-jean-demo", "name": "Jean Demo", "birth_date": "1961-03-12",
                          "locality": "Sion"}]}

Representatives: a representative id is not something the gateway can check by itself. It is issued
by the community when it enrols a person as a representative (their identity checked, their
electronic identity registered: the `epr_representative_id` claim of the sign-in names it). The
gateway knows which ids exist only from that register, given here; the MPI knows patients, not
representatives (a representative need not have a record). The page offers to add a representative
only by an id of this register, and shows who it is (name, birth date, locality) before the patient
confirms: a 303 is the most powerful grant there is.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from adapters.cara.dates import InvalidDate, parse_full_date
from adapters.cara.identifier_syntax import is_oid_urn, is_printable_id
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
class Representative:
    id: str
    name: str
    birth_date: date | None = None
    locality: str = ""


@dataclass(frozen=True)
class Directory:
    professionals: tuple[Professional, ...] = ()
    groups: tuple[Group, ...] = ()
    representatives: tuple[Representative, ...] = ()

    def name_of(self, subject_id: str | None) -> str | None:
        return self._names.get(subject_id or "")

    def organisation_of(self, gln: str | None) -> str | None:
        return next((p.organisation for p in self._professionals.get(gln or "", ()) if p.organisation), None)

    def representative(self, representative_id: str | None) -> Representative | None:
        return self._representatives.get(representative_id or "")

    def with_authors(self, authors: list[Professional]) -> Directory:
        """The directory plus the record's authors not yet in it (authors first: the patient knows them).
        A GLN in both keeps the directory's name (one name per professional on every page)."""
        extra: dict[str, Professional] = {}
        for author in authors:
            if author.gln not in self._professionals:
                extra.setdefault(author.gln, author)
        return replace(self, professionals=tuple(extra.values()) + self.professionals)

    # Looked up for every line of a trail (thousands a page): indexed once per directory.
    @functools.cached_property
    def _professionals(self) -> dict[str, tuple[Professional, ...]]:
        found: dict[str, tuple[Professional, ...]] = {}
        for professional in self.professionals:
            found[professional.gln] = (*found.get(professional.gln, ()), professional)
        return found

    @functools.cached_property
    def _names(self) -> dict[str, str]:
        names = {r.id: r.name for r in self.representatives}
        names |= {g.id: g.name for g in reversed(self.groups)}
        names |= {p.gln: p.name for p in reversed(self.professionals)}  # the first one listed wins
        return names

    @functools.cached_property
    def _representatives(self) -> dict[str, Representative]:
        return {r.id: r for r in reversed(self.representatives)}


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
                     groups=tuple(_group(g, i) for i, g in enumerate(data.get("groups", []))),
                     representatives=tuple(_representative(r, i)
                                           for i, r in enumerate(data.get("representatives", []))))


def _professional(entry: Any, index: int) -> Professional:
    if not isinstance(entry, dict) or not is_valid_gln(str(entry.get("gln", ""))) or not entry.get("name"):
        raise DirectoryInvalid(f"professionals[{index}] needs a valid GLN (13 digits, GS1 check digit) and a name")
    return Professional(gln=entry["gln"], name=str(entry["name"]), organisation=str(entry.get("organisation", "")))


def _group(entry: Any, index: int) -> Group:
    if not isinstance(entry, dict) or not is_oid_urn(str(entry.get("id", ""))) or not entry.get("name"):
        raise DirectoryInvalid(f"groups[{index}] needs an id urn:oid:… and a name")
    return Group(id=entry["id"], name=str(entry["name"]))


def _representative(entry: Any, index: int) -> Representative:
    born = _date_or_none(entry.get("birth_date")) if isinstance(entry, dict) else None
    if (not isinstance(entry, dict) or not is_printable_id(entry.get("id")) or len(entry["id"]) > 64
            or not entry.get("name") or (entry.get("birth_date") and born is None)):
        raise DirectoryInvalid(f"representatives[{index}] needs an id (printable ASCII, no space, at most 64 "
                               "characters), a name, and a birth_date as YYYY-MM-DD if any")
    return Representative(id=entry["id"], name=str(entry["name"]), birth_date=born,
                          locality=str(entry.get("locality", "")))


def _date_or_none(value: Any) -> date | None:
    try:
        return parse_full_date(value)
    except InvalidDate:
        return None


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
