"""The record's authors (contained FHIR resources) as XDS author slots.

An XDS author is a classification with slots: authorPerson (XCN, with the GLN), authorInstitution
(XON, the OID in XON.10: the community's portal filters institutions by it), authorRole,
authorSpecialty, authorTelecommunication. The model keeps each author as the FHIR resources it was
given in (`Author.resource`: the reference and the contained Practitioner, PractitionerRole,
Organization, Patient or RelatedPerson); an author whose resource is not contained (a bare
reference) says nothing XDS can carry and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.cara.model import Author
from adapters.community import hl7_types
from adapters.community.xds_table import GLN_OID, ROLE_OID, oid_of_system

_ROLE_SYSTEM = f"urn:oid:{ROLE_OID}"
_RFC3986 = "urn:ietf:rfc:3986"


@dataclass(frozen=True)
class XdsAuthor:
    """One author as XDS slot values (already in their HL7 v2 form)."""

    person: str | None = None
    institutions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    telecoms: tuple[str, ...] = ()

    @property
    def says_something(self) -> bool:
        """The community needs at least one of authorPerson, authorInstitution, authorTelecom."""
        return bool(self.person or self.institutions or self.telecoms)

    def slots(self) -> list[tuple[str, list[str]]]:
        named = [("authorPerson", [self.person] if self.person else []), ("authorInstitution", list(self.institutions)),
                 ("authorRole", list(self.roles)), ("authorSpecialty", list(self.specialties)),
                 ("authorTelecommunication", list(self.telecoms))]
        return [(name, values) for name, values in named if values]


@dataclass(frozen=True)
class ResponsibleProfessional:
    """Who the technical user provides for: the author of last resort, when a document names none."""

    gln: str
    name: str
    institution_name: str | None = None
    institution_oid: str | None = None

    def as_author(self) -> XdsAuthor:
        institutions = (hl7_types.xon(name=self.institution_name or "", oid=self.institution_oid),) \
            if self.institution_oid else ()
        return XdsAuthor(person=hl7_types.xcn(gln=self.gln, family=self.name, given=None),
                         institutions=institutions, roles=(role("HCP"),))


def role(code: str) -> str:
    return f"{hl7_types.escape(code)}^^^&{ROLE_OID}&ISO"


def xds_author(author: Author) -> XdsAuthor | None:
    """The model author as XDS slots, or None when it carries nothing XDS can say."""
    contained = {f"#{r.get('id')}": r for r in author.resource.get("contained", []) if isinstance(r, dict)}
    target = contained.get((author.resource.get("reference") or {}).get("reference", ""))
    if target is None:
        return None
    kind = target.get("resourceType")
    person_resource, organization, roles, specialties = None, None, [], []
    if kind == "PractitionerRole":
        person_resource = contained.get((target.get("practitioner") or {}).get("reference", ""))
        organization = contained.get((target.get("organization") or {}).get("reference", ""))
        roles = [c["code"] for concept in target.get("code", []) for c in concept.get("coding", [])
                 if c.get("system") == _ROLE_SYSTEM and c.get("code")]
        specialties = [_ce(c) for concept in target.get("specialty", []) for c in concept.get("coding", [])]
    elif kind in ("Practitioner", "Patient", "RelatedPerson"):
        person_resource = target
        roles = {"Patient": ["PAT"], "RelatedPerson": ["REP"]}.get(kind, [])
    elif kind == "Organization":
        organization = target
    telecoms = [t for r in (target, person_resource) if r for t in _telecoms(r)]
    xds = XdsAuthor(person=_person(person_resource) if person_resource else None,
                    institutions=tuple(x for x in [_institution(organization)] if x),
                    roles=tuple(role(code) for code in dict.fromkeys(roles)),
                    specialties=tuple(s for s in specialties if s),
                    telecoms=tuple(dict.fromkeys(telecoms)))
    return xds if xds.says_something else None


def _person(resource: dict[str, Any]) -> str | None:
    gln = next((i.get("value") for i in resource.get("identifier", [])
                if i.get("system") == f"urn:oid:{GLN_OID}" and i.get("value")), None)
    name = next(iter(resource.get("name") or []), {})
    given = " ".join(name.get("given") or []) or None
    prefix = " ".join(name.get("prefix") or []) or None
    if not (gln or name.get("family") or given):
        return None
    return hl7_types.xcn(gln=gln, family=name.get("family"), given=given, prefix=prefix)


def _institution(organization: dict[str, Any] | None) -> str | None:
    if not organization or not organization.get("name"):
        return None
    identifiers = organization.get("identifier", [])
    oid = next((i["value"][8:] for i in identifiers if i.get("system") == _RFC3986
                and oid_of_system(i.get("value"))), None)
    if oid:
        return hl7_types.xon(name=organization["name"], oid=oid)
    other = next(((i["value"], oid_of_system(i.get("system"))) for i in identifiers
                  if oid_of_system(i.get("system")) and i.get("value")), None)
    return hl7_types.xon(name=organization["name"], oid=None, other_id=other)


def _ce(coding: dict[str, Any]) -> str | None:
    domain = oid_of_system(coding.get("system"))
    return f"{hl7_types.escape(coding['code'])}^^^&{domain}&ISO" if domain and coding.get("code") else None


def _telecoms(resource: dict[str, Any]) -> list[str]:
    return [x for t in resource.get("telecom", []) if t.get("value")
            for x in [hl7_types.xtn(t.get("system", ""), t["value"])] if x]
