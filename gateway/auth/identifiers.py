"""Swiss EPR identifiers as they appear in IUA tokens, checked strictly.

A GLN with a wrong check digit is a typing error or a forgery; either way it must not become the
identity that consent and audit record, so it is refused at the door rather than further in.
"""

from __future__ import annotations

from adapters.cara.identifier_syntax import is_gln, is_oid_urn, is_spid
from adapters.cara.vocabulary import PURPOSE_OF_USE_SYSTEM, ROLE_SYSTEM, SPID_SYSTEM
from consent.roles import ROLES

__all__ = [
    "GLN_QUALIFIER", "SPID_QUALIFIER", "REPRESENTATIVE_QUALIFIER", "ROLE_SYSTEM", "PURPOSE_OF_USE_SYSTEM",
    "SPID_SYSTEM", "ROLES", "PURPOSES", "gln_is_valid", "spid_is_well_formed", "person_id_for",
    "spid_from_person_id", "oid_urn_is_valid",
]

GLN_QUALIFIER = "urn:gs1:gln"
SPID_QUALIFIER = "urn:e-health-suisse:2015:epr-spid"
REPRESENTATIVE_QUALIFIER = "urn:e-health-suisse:representative-id"

PURPOSES = frozenset({"NORM", "EMER", "AUTO", "DICOM_AUTO"})

_PERSON_ID_SUFFIX = f"^^^&{SPID_SYSTEM.removeprefix('urn:oid:')}&ISO"


def gln_is_valid(gln: str) -> bool:
    """13 ASCII digits whose last one is the GS1 mod-10 check digit (weights 3,1,3,… from the right)."""
    return is_gln(gln)


def spid_is_well_formed(spid: str) -> bool:
    """18 ASCII digits. The SPID's own check digit is the MPI's business, not the token's."""
    return is_spid(spid)


def person_id_for(spid: str) -> str:
    """The IUA `person_id` (HL7 v2 CX) for an EPR-SPID."""
    return f"{spid}{_PERSON_ID_SUFFIX}"


def spid_from_person_id(person_id: str) -> str | None:
    """The SPID in `761337610411353650^^^&2.16.756.5.30.1.127.3.10.3&ISO`, or None when not that form."""
    if not isinstance(person_id, str) or not person_id.endswith(_PERSON_ID_SUFFIX):
        return None
    spid = person_id[: -len(_PERSON_ID_SUFFIX)]
    return spid if spid_is_well_formed(spid) else None


def oid_urn_is_valid(value: str) -> bool:
    return is_oid_urn(value)
