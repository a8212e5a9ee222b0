"""The syntax of every identifier and plain value the gateway accepts, in one place.

Each check matches the *whole* value over *explicit ASCII classes*, because two everyday shortcuts
let forgeries through: `re.match(r"...$")` accepts a trailing newline (`$` matches before it), and
`\\d` / `str.isdigit()` accept any Unicode digit (full-width `１`, Arabic-Indic `١`, mathematical `𝟏`,
even `²`, which `int()` then refuses). An identifier that passes here is printable ASCII, so it can
go into a header (`Location`), a URL or a log line as it is. `tests/unit/adapters/test_identifier_syntax.py`
walks every predicate below with such values, and checks that no validating module goes back to
`\\d`, `isdigit()` or `re.match`.

One `IdentifierKind` per kind of identifier (uniqueId, entryUUID, sourceId, local patient id, GLN,
EPR-SPID, AHVN13, MPI-PID, OID): every face checks a field of that kind with that object, after its own
decoding (JSON, HL7 escapes, XML references), and names the field in its own refusal
(`tests/functional/test_hostile_identifiers.py` walks every (face, field) with the same hostile values).
HL7 v2 and XDS write uniqueIds and sourceIds as bare OIDs; `IdentifierKind.read` gives the one form the
record keeps and MHD serves (`urn:oid:…`, `urn:uuid:…`), so the same document has one uniqueId whichever
face brought it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from adapters.cara.vocabulary import GLN_SYSTEM, SPID_SYSTEM

__all__ = [
    "AHVN13", "AHVN13_SYSTEM", "ENTRY_UUID", "GLN", "IdentifierKind", "InvalidIdentifier", "KINDS",
    "LOCAL_PATIENT_ID", "MPI_PID", "OID", "SOURCE_ID", "SPID", "UNIQUE_ID", "VALIDATORS", "ascii_int",
    "canonical_oid_urn", "canonical_unique_id",
    "identifier_problem", "is_ahvn13", "is_gln", "is_media_type", "is_oid", "is_oid_urn",
    "is_printable_id", "is_spid", "is_unique_id", "is_uuid_urn", "shown",
]

AHVN13_SYSTEM = "urn:oid:2.16.756.5.32"
MAX_OID = 64  # XDS (ITI TF-3 4.2.3.2.26, 4.2.3.3.12): an OID in a uniqueId or sourceId has at most 64 characters

_DIGITS_13 = re.compile(r"[0-9]{13}")
_DIGITS_18 = re.compile(r"[0-9]{18}")
_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*)){1,63}")
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID_URN = re.compile(rf"urn:uuid:{_UUID}")
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
    """An OID in dotted form (`2.16.756…`): arcs without leading zeros, at least two, at most 64
    characters (the XDS bound; a longer one names nothing any registry accepts)."""
    return isinstance(value, str) and len(value) <= MAX_OID and _full(_OID, value)


def is_oid_urn(value: object) -> bool:
    return isinstance(value, str) and value.startswith("urn:oid:") and is_oid(value[8:])


def is_uuid_urn(value: object) -> bool:
    return _full(_UUID_URN, value)


def is_unique_id(value: object) -> bool:
    """A document or SubmissionSet uniqueId as MHD carries it: `urn:oid:…` or `urn:uuid:…`."""
    return is_oid_urn(value) or is_uuid_urn(value)


def is_printable_id(value: object) -> bool:
    """An opaque id that will travel in headers and URLs (representative ids, path ids): 1–256
    printable ASCII characters without spaces."""
    return _full(_PRINTABLE_ID, value)


def is_local_patient_id(value: object) -> bool:
    """An institution's own patient id (PID-3, XDS sourcePatientId, a Patient identifier in an OID
    domain): 1 to 64 printable ASCII characters, spaces inside only."""
    return _full(_LOCAL_ID, value)


def is_fhir_id(value: object) -> bool:
    """A FHIR resource id (R4 `id`): what the MPI-PID is, as PDQm answers it and `Patient/{id}` names it."""
    return _full(_FHIR_ID, value)


def canonical_unique_id(value: object) -> str | None:
    """A uniqueId as HL7 v2 (TXA-12) or XDS (`XDSDocumentEntry.uniqueId`) write it — a bare OID or UUID,
    or already a URN — in the one form MHD serves (`masterIdentifier`): `urn:oid:…` or `urn:uuid:…`.
    None for anything else (XDS's `OID^extension`, a local document number): the CH profile has no
    form for it, so it is refused where it comes in, never stored."""
    if is_unique_id(value):
        return value  # type: ignore[return-value]
    if is_oid(value):
        return f"urn:oid:{value}"
    if _full(_BARE_UUID, value):
        return f"urn:uuid:{value}"
    return None


def canonical_oid_urn(value: object) -> str | None:
    """An OID written bare (XDS `sourceId`) or as `urn:oid:…`, as `urn:oid:…`; None for anything else."""
    if is_oid_urn(value):
        return value  # type: ignore[return-value]
    return f"urn:oid:{value}" if is_oid(value) else None


def identifier_problem(system: object, value: object) -> str | None:
    """Why an Identifier (system, value) of an incoming resource is malformed, or None.

    The systems with a known syntax are checked by it (SPID, GLN, AHVN13 with its dots); an
    `urn:oid:` system must be an OID, and a value in an OID domain is an institution's id (the local
    patient id's rule); any other value must be plain text: no control, format or invisible character
    (TAB, NBSP, zero-width space), no digit of another script, no surrounding blank, which would each
    make a second spelling of the same identifier.
    """
    if not isinstance(system, str) or not isinstance(value, str):
        return "identifier system and value must be strings"
    if system.startswith("urn:oid:") and not is_oid_urn(system):
        return f"identifier system {shown(system)} is not an OID (urn:oid: and ASCII digits, at most 64)"
    if not is_printable_id(system):
        return "an identifier system is a URI: printable ASCII without spaces"
    if system == SPID_SYSTEM and not is_spid(value):
        return "an EPR-SPID is 18 ASCII digits"
    if system == GLN_SYSTEM and not is_gln(value):
        return "a GLN is 13 ASCII digits with a valid GS1 check digit"
    if system == AHVN13_SYSTEM and not is_ahvn13(value.replace(".", "")):
        return "the AHVN13 must be 13 digits starting with 756 with a valid EAN-13 check digit"
    if system in (SPID_SYSTEM, GLN_SYSTEM, AHVN13_SYSTEM):
        return None
    if system.startswith("urn:oid:"):
        return LOCAL_PATIENT_ID.problem(value)
    if not value or len(value) > 256 or value != value.strip() or not _is_plain_text(value):
        return ("an identifier value is 1 to 256 characters of plain text (no control, format or invisible "
                "character, no digit of another script, no leading or trailing blank)")
    return None


def _is_plain_text(value: str) -> bool:
    for character in value:
        if " " <= character <= "~":
            continue
        # C*: control, format (zero-width space, BOM), surrogates, private use, unassigned; Z*: separators
        # other than the ASCII space (NBSP, line and paragraph separators); N*: digits of other scripts.
        if unicodedata.category(character)[0] in "CZN":
            return False
    return True


class InvalidIdentifier(Exception):
    """A value that is not an identifier of its kind; `reason` names the kind and the rule."""

    def __init__(self, kind: "IdentifierKind", value: object, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.value = value
        self.reason = reason


@dataclass(frozen=True)
class IdentifierKind:
    """One kind of identifier: its name as a refusal says it, the rule a value must follow, the check.
    Every face checks a field of this kind with the same object, after its own decoding (HL7 escapes,
    XML character references, JSON), so a value refused on one face is refused on all. `spelled`: the
    other spellings HL7 v2 and XDS use (a bare OID for `urn:oid:…`) → the one form the record keeps."""

    name: str
    rule: str
    accepts: Callable[[object], bool]
    spelled: Callable[[object], str | None] | None = None
    spelled_rule: str = ""
    # A patient's identifier is never repeated in a refusal: refusals reach the audit ledger (kept in the
    # clear, no local ids) and the sender's ACK; the field's name and the rule say what to fix.
    names_a_patient: bool = False

    def problem(self, value: object) -> str | None:
        """Why `value` is not this kind in its canonical form (FHIR carries that form), or None."""
        return None if self.accepts(value) else f"{self._the(value)} is not {self.rule}"

    def _the(self, value: object) -> str:
        return f"the {self.name}" if self.names_a_patient else f"the {self.name} {shown(value)}"

    def read(self, value: object) -> str:
        """`value` as the record keeps it, from any spelling of this kind; InvalidIdentifier otherwise."""
        if self.accepts(value):
            return value  # type: ignore[return-value]
        canonical = self.spelled(value) if self.spelled else None
        if canonical is None:
            rule = self.spelled_rule or self.rule
            raise InvalidIdentifier(self, value, f"{self._the(value)} is not {rule}")
        return canonical


UNIQUE_ID = IdentifierKind("uniqueId", f"urn:oid: and an OID of at most {MAX_OID} characters, or urn:uuid: and "
                           "a UUID", is_unique_id, canonical_unique_id,
                           f"an OID of at most {MAX_OID} characters or a UUID (bare, or as urn:oid:/urn:uuid:)")
ENTRY_UUID = IdentifierKind("entryUUID", "urn:uuid: and a UUID", is_uuid_urn)
SOURCE_ID = IdentifierKind("sourceId", f"urn:oid: and an OID of at most {MAX_OID} characters", is_oid_urn,
                           canonical_oid_urn, f"an OID of at most {MAX_OID} characters (bare or as urn:oid:)")
LOCAL_PATIENT_ID = IdentifierKind("local patient id", "1 to 64 printable ASCII characters (spaces inside only)",
                                  is_local_patient_id, names_a_patient=True)
GLN = IdentifierKind("GLN", "13 ASCII digits with a valid GS1 check digit", is_gln)
SPID = IdentifierKind("EPR-SPID", "18 ASCII digits", is_spid, names_a_patient=True)
AHVN13 = IdentifierKind("AHVN13", "13 ASCII digits starting with 756 with a valid EAN-13 check digit", is_ahvn13,
                        names_a_patient=True)
MPI_PID = IdentifierKind("MPI-PID", "a FHIR id (1 to 64 characters of A-Z, a-z, 0-9, - and .)", is_fhir_id,
                         names_a_patient=True)
OID = IdentifierKind("OID", f"an OID (ASCII digits and dots, at most {MAX_OID} characters)", is_oid)
KINDS = {kind.name: kind for kind in (UNIQUE_ID, ENTRY_UUID, SOURCE_ID, LOCAL_PATIENT_ID, GLN, SPID, AHVN13,
                                      MPI_PID, OID)}

_LOCAL_ID = re.compile(r"[!-~](?:[ -~]{0,62}[!-~])?")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_BARE_UUID = re.compile(_UUID)


def shown(value: object) -> str:
    """A refused value as a message quotes it: bounded, so a 10,000-character value is not echoed back."""
    text = repr(value)
    return text if len(text) <= 48 else f"{text[:40]}…' ({len(value) if isinstance(value, str) else '?'} characters)"


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
    "printable_id": (is_printable_id, "rep-4711"),
    "media_type": (is_media_type, "application/vnd.oasis.opendocument.text; version=1.2"),
    "ascii_int": (lambda v: ascii_int(v) is not None, "20"),
    "spid_identifier": (lambda v: identifier_problem(SPID_SYSTEM, v) is None, "761337610411353650"),
    "gln_identifier": (lambda v: identifier_problem(GLN_SYSTEM, v) is None, "7601000000002"),
    "ahvn13_identifier": (lambda v: identifier_problem(AHVN13_SYSTEM, v) is None, "756.1234.5678.97"),
    "identifier_system": (lambda v: identifier_problem(v, "L-1") is None, "urn:oid:2.16.756.5.30.1.999.2.1"),
    "local_patient_id_identifier": (lambda v: identifier_problem("urn:oid:2.16.756.5.30.1.999.2.1", v) is None,
                                    "L-0042"),
    "plain_identifier": (lambda v: identifier_problem("http://example.org/ids", v) is None, "Zoé-42"),
    "canonical_unique_id": (lambda v: canonical_unique_id(v) is not None, "1.2.840.317.5947431.51.20080131160038"),
    "canonical_oid_urn": (lambda v: canonical_oid_urn(v) is not None, "2.16.756.5.30.1.145"),
    **{f"kind {kind.name}": (kind.accepts, example) for kind, example in (
        (UNIQUE_ID, "urn:uuid:0c6c5e1a-8e43-4a51-9b0b-3a9c2d1e4f50"), (ENTRY_UUID, "urn:uuid:0c6c5e1a-8e43-4a51-9b0b-3a9c2d1e4f50"),
        (SOURCE_ID, "urn:oid:2.16.756.5.30.1.145"), (LOCAL_PATIENT_ID, "INF 000042"), (GLN, "7601000000002"),
        (SPID, "761337610411353650"), (AHVN13, "7561234567897"), (MPI_PID, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        (OID, "2.16.756.5.30.1.145"))},
}
