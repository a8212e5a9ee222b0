"""The syntax of every identifier and plain value the gateway accepts, in one place.

Each check matches the *whole* value over *explicit ASCII classes*, because two everyday shortcuts
let forgeries through: `re.match(r"...$")` accepts a trailing newline (`$` matches before it), and
`\\d` / `str.isdigit()` accept any Unicode digit (full-width `１`, Arabic-Indic `١`, mathematical `𝟏`,
even `²`, which `int()` then refuses). An identifier that passes here is printable ASCII, so it can
go into a header (`Location`), a URL or a log line as it is. `tests/unit/adapters/test_identifier_syntax.py`
walks every predicate below with such values, and checks that no validating module goes back to
`\\d`, `isdigit()` or `re.match`.
"""

from __future__ import annotations

import re

from adapters.cara.vocabulary import GLN_SYSTEM, SPID_SYSTEM

__all__ = [
    "AHVN13_SYSTEM", "VALIDATORS", "ascii_int", "identifier_problem", "is_ahvn13", "is_full_date", "is_gln",
    "is_media_type", "is_oid", "is_oid_urn", "is_printable_id", "is_spid", "is_unique_id", "is_uuid_urn",
    "is_year_date",
]

AHVN13_SYSTEM = "urn:oid:2.16.756.5.32"

_DIGITS_13 = re.compile(r"[0-9]{13}")
_DIGITS_18 = re.compile(r"[0-9]{18}")
_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID_URN = re.compile(rf"urn:uuid:{_UUID}")
_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_YEAR_DATE = re.compile(r"[0-9]{4}(?:-[0-9]{2}(?:-[0-9]{2})?)?")
_PRINTABLE_ID = re.compile(r"[!-~]{1,256}")  # printable ASCII, no space, no control character
_ASCII_INT = re.compile(r"[0-9]{1,18}")  # at most 18 digits: int() never sees a 4,300-digit string
# RFC 6838 type/subtype, then RFC 9110 parameters (token=token or a quoted string).
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"[ !#-\[\]-~]*\"))*")


def _full(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_spid(value: object) -> bool:
    """EPR-SPID: 18 ASCII digits (its check digit is the national MPI's business)."""
    return _full(_DIGITS_18, value)


def is_gln(value: object) -> bool:
    """GS1 GLN: 13 ASCII digits, the last one the mod-10 check digit (weights 1, 3, 1, … from the left)."""
    if not _full(_DIGITS_13, value):
        return False
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(value[:12]))  # type: ignore[index]
    return (10 - total % 10) % 10 == int(value[12])  # type: ignore[index]


def is_ahvn13(value: object) -> bool:
    """AHVN13: 13 ASCII digits starting 756, EAN-13 check digit (dots are removed by the caller)."""
    return is_gln(value) and value.startswith("756")  # type: ignore[union-attr]


def is_oid(value: object) -> bool:
    """An OID in dotted form (`2.16.756…`): arcs without leading zeros, at least two."""
    return _full(_OID, value)


def is_oid_urn(value: object) -> bool:
    return isinstance(value, str) and value.startswith("urn:oid:") and is_oid(value[8:])


def is_uuid_urn(value: object) -> bool:
    return _full(_UUID_URN, value)


def is_unique_id(value: object) -> bool:
    """A document or SubmissionSet uniqueId as MHD carries it: `urn:oid:…` or `urn:uuid:…`."""
    return is_oid_urn(value) or is_uuid_urn(value)


def is_full_date(value: object) -> bool:
    """`YYYY-MM-DD` in ASCII digits (the calendar check is the caller's: `date.fromisoformat`)."""
    return _full(_FULL_DATE, value)


def is_year_date(value: object) -> bool:
    """A FHIR `date` at any precision: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`."""
    return _full(_YEAR_DATE, value)


def is_printable_id(value: object) -> bool:
    """An opaque id that will travel in headers and URLs (representative ids, path ids): 1–256
    printable ASCII characters without spaces."""
    return _full(_PRINTABLE_ID, value)


def identifier_problem(system: object, value: object) -> str | None:
    """Why an Identifier (system, value) of an incoming resource is malformed, or None.

    The systems with a known syntax are checked by it (SPID, GLN, AHVN13 with its dots); an
    `urn:oid:` system must be an OID; any other value must at least be free of control characters
    and of surrounding whitespace, which would make it a second spelling of the same identifier.
    """
    if not isinstance(system, str) or not isinstance(value, str):
        return "identifier system and value must be strings"
    if system.startswith("urn:oid:") and not is_oid_urn(system):
        return f"identifier system {system!r} is not an OID (urn:oid: and ASCII digits)"
    if not is_printable_id(system):
        return "an identifier system is a URI: printable ASCII without spaces"
    if system == SPID_SYSTEM and not is_spid(value):
        return "an EPR-SPID is 18 ASCII digits"
    if system == GLN_SYSTEM and not is_gln(value):
        return "a GLN is 13 ASCII digits with a valid GS1 check digit"
    if system == AHVN13_SYSTEM and not is_ahvn13(value.replace(".", "")):
        return "the AHVN13 must be 13 digits starting with 756 with a valid EAN-13 check digit"
    if not value or len(value) > 256 or value != value.strip() or _CONTROL.search(value):
        return ("an identifier value is 1 to 256 characters without control characters or leading or "
                "trailing whitespace")
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def is_media_type(value: object) -> bool:
    """A MIME type as `Content-Type` carries it (`text/html; charset=utf-8`), at most 255 characters:
    the stored contentType becomes the ITI-68 answer's header."""
    return isinstance(value, str) and len(value) <= 255 and _MEDIA_TYPE.fullmatch(value) is not None


def ascii_int(value: object) -> int | None:
    """A non-negative integer written in 1 to 18 ASCII digits, else None (never a ValueError)."""
    return int(value) if _full(_ASCII_INT, value) else None  # type: ignore[arg-type]


# name → (predicate, a value it accepts): the walk over every validator starts from these.
VALIDATORS = {
    "spid": (is_spid, "761337610411353650"),
    "gln": (is_gln, "7601000000002"),
    "ahvn13": (is_ahvn13, "7561234567897"),
    "oid": (is_oid, "2.16.756.5.30.1.127.3.10.3"),
    "oid_urn": (is_oid_urn, "urn:oid:2.16.756.5.30.1.127.3.10.3"),
    "uuid_urn": (is_uuid_urn, "urn:uuid:0c6c5e1a-8e43-4a51-9b0b-3a9c2d1e4f50"),
    "unique_id": (is_unique_id, "urn:oid:1.2.3.4.5"),
    "full_date": (is_full_date, "2024-01-31"),
    "year_date": (is_year_date, "2024-01"),
    "printable_id": (is_printable_id, "rep-4711"),
    "media_type": (is_media_type, "application/vnd.oasis.opendocument.text; version=1.2"),
    "ascii_int": (lambda v: ascii_int(v) is not None, "20"),
    "spid_identifier": (lambda v: identifier_problem(SPID_SYSTEM, v) is None, "761337610411353650"),
    "gln_identifier": (lambda v: identifier_problem(GLN_SYSTEM, v) is None, "7601000000002"),
    "ahvn13_identifier": (lambda v: identifier_problem(AHVN13_SYSTEM, v) is None, "756.1234.5678.97"),
    "identifier_system": (lambda v: identifier_problem(v, "L-1") is None, "urn:oid:2.16.756.5.30.1.999.2.1"),
}
