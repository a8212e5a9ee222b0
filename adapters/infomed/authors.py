"""An author as both Infomed sources name one — an XCN (HL7 v2 TXA-9, XDS `authorPerson`) — → the
record's `Author` with a contained Practitioner. One rule for both faces, so an author refused over
MLLP is refused in a migration too.

Which id becomes which identifier:
- XCN.9 names the GLN OID (2.51.1.3), or no authority and XCN.1 is 13 ASCII digits: a GLN, which
  must then pass its check digit (a wrong digit names another professional, or none);
- XCN.9 names another OID: an identifier in that OID's domain (the local id rule);
- no usable authority: an id the record cannot place; it is dropped (as before), but only if it is
  plain ASCII — a GLN spelled in full-width digits or with a zero-width space is refused, not lost;
- no name at all: XCN.1 is the name (senders write `IvanDoctorovich` there).
"""

from __future__ import annotations

import re

from adapters.cara.identifier_syntax import GLN, LOCAL_PATIENT_ID, InvalidIdentifier, is_oid
from adapters.cara.identifier_syntax import shown as _shown
from adapters.cara.model import Author
from adapters.cara.vocabulary import GLN_SYSTEM

GLN_OID = "2.51.1.3"


def author_from_xcn(number: str, family: str, given: str, authority: str, *, reference: str) -> Author:
    """`reference`: the contained Practitioner's id (`author`, `author1`, …). Raises InvalidIdentifier."""
    if not family and not given:
        number, family = "", number
    practitioner: dict = {"resourceType": "Practitioner", "id": reference}
    identifier = _identifier(number, authority.removeprefix("urn:oid:")) if number else None
    if identifier is not None:
        practitioner["identifier"] = [identifier]
    name = {k: v for k, v in (("family", family), ("given", [given] if given else None)) if v}
    if name:
        practitioner["name"] = [name]
    return Author({"reference": {"reference": f"#{reference}"}, "contained": [practitioner]},
                  (family,) if family else (), (given,) if given else ())


def _identifier(number: str, authority: str) -> dict | None:
    if authority == GLN_OID or (not authority and _THIRTEEN_DIGITS.fullmatch(number)):
        return {"system": GLN_SYSTEM, "value": GLN.read(number)}
    if not LOCAL_PATIENT_ID.accepts(number):
        raise InvalidIdentifier(LOCAL_PATIENT_ID, number, f"the author's id {_shown(number)} is neither a GLN "
                                "nor 1 to 64 printable ASCII characters")
    if is_oid(authority):
        return {"system": f"urn:oid:{authority}", "value": number}
    return None


_THIRTEEN_DIGITS = re.compile(r"[0-9]{13}")
