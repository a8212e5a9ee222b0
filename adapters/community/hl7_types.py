"""The HL7 v2 data types XDS metadata carries in slot values (ITI TF-3 Table 4.2.3.1.7-2).

CX (patient ids), XCN (author person), XON (author institution), XTN (telecom), XPN/PID fields
(sourcePatientInfo) and DTM (times, UTC). Values are escaped with the HL7 escape sequences, so a name
holding `^` or `&` cannot shift the components a registry reads.
"""

from __future__ import annotations

from adapters.cara.dates import InvalidDate, parse_fhir
from adapters.community.xds_table import GLN_OID

_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\",
                          "\r": " ", "\n": " "})
PID_8 = {"female": "F", "male": "M", "other": "O", "unknown": "U"}


def escape(value: str) -> str:
    return value.translate(_ESCAPES)


def cx(value: str, assigning_authority_oid: str) -> str:
    """`id^^^&OID&ISO`."""
    return f"{escape(value)}^^^&{assigning_authority_oid}&ISO"


def xcn(*, gln: str | None, family: str | None, given: str | None, prefix: str | None = None) -> str:
    """`id^family^given^^^prefix^^^&2.51.1.3&ISO` (XCN.1 with XCN.9 when the person has a GLN)."""
    components = [escape(gln or ""), escape(family or ""), escape(given or ""), "", "", escape(prefix or "")]
    if gln:
        components += ["", "", f"&{GLN_OID}&ISO"]
    return "^".join(components).rstrip("^")


def xon(*, name: str, oid: str | None, other_id: tuple[str, str] | None = None) -> str:
    """`Name^^^^^^^^^OID` (XON.10 an OID); an identifier in another domain (a GLN) goes into XON.10
    with its domain as XON.6 (`Name^^^^^&2.51.1.3&ISO^^^^7601…`)."""
    if oid:
        return f"{escape(name)}^^^^^^^^^{oid}"
    if other_id:
        value, domain = other_id
        return f"{escape(name)}^^^^^&{domain}&ISO^^^^{escape(value)}"
    return escape(name)


def xtn(system: str, value: str) -> str | None:
    """An e-mail or a telephone number as XTN (`^^Internet^a@b.ch`, `^PRN^PH^^^^^^^^^+41…`)."""
    if system == "email":
        return f"^^Internet^{escape(value)}"
    if system == "phone":
        return f"^PRN^PH^^^^^^^^^{escape(value)}"
    return None


def dtm(value: str) -> str:
    """A FHIR date/dateTime → HL7 DTM in UTC at its precision (`2023-12-19T11:21:16+01:00` →
    `20231219102116`; a date stays a date: `2023-12-19` → `20231219`). ValueError if not FHIR."""
    try:
        start = parse_fhir(value, kind="dateTime").start
    except InvalidDate as refused:
        raise ValueError(str(refused)) from None
    if "T" not in value:
        return value.replace("-", "")
    return start.strftime("%Y%m%d%H%M%S")


def birth_date(value: str) -> str:
    """PID-7 as the registry reads it: the date's digits (YYYY[MM[DD]])."""
    try:
        parse_fhir(value, kind="date")
    except InvalidDate as refused:
        raise ValueError(str(refused)) from None
    return value[:10].replace("-", "")
