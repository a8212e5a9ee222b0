"""ITI-67 Find Document References: the MHD search parameters turned into a `DocumentQuery`.

Strict handling: an unknown parameter, a bad value or a missing `patient.identifier` is an error
the caller sees, never a silently widened search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime

from adapters.cara.errors import InvalidInput
from adapters.cara.dates import InvalidDate, value_range
from adapters.cara.identifier_syntax import ascii_int, is_spid
from adapters.cara.vocabulary import DOCUMENT_STATUSES, SPID_SYSTEM

TOKEN_PARAMS = ("category", "type", "setting", "facility", "event", "format", "security-label", "related")
STRING_PARAMS = ("author.family", "author.given")
DATE_PARAMS = ("date", "period")
DATE_PREFIXES = ("eq", "ge", "le", "gt", "lt")
DEFAULT_COUNT = 20
MAX_COUNT = 100
# Parameters in one query, and values one search ORs (comma lists): each becomes a term of the SQL
# statement, whose depth SQLite bounds (1,000); the face refuses more parameters (rest_conventions).
MAX_SEARCH_VALUES = 400
PATIENT_PARAMS = ("patient.identifier", "patient", "subject")  # exactly one: the SPID, or the MPI's Patient id
SUPPORTED = (*PATIENT_PARAMS, "status", *TOKEN_PARAMS, *STRING_PARAMS, *DATE_PARAMS, "_count", "_offset",
             "_cursor")
_PATIENT_ID = re.compile(r"(?:.*/)?(?:Patient/)([A-Za-z0-9\-.]{1,64})|([A-Za-z0-9\-.]{1,64})")


@dataclass(frozen=True)
class TokenFilter:
    """Entries having any of `alternatives` ((system or None for any system, value or None)) for `param`."""

    param: str
    alternatives: tuple[tuple[str | None, str | None], ...]


@dataclass(frozen=True)
class DateFilter:
    param: str  # date | period
    prefix: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class DocumentQuery:
    patient_pid: str  # the (surviving) patient; the store adds every patient merged into it
    statuses: tuple[str, ...] = ()
    tokens: tuple[TokenFilter, ...] = ()
    dates: tuple[DateFilter, ...] = ()
    confidentiality: tuple[str, ...] | None = None  # None: every level; consent narrows it
    offset: int = 0
    count: int = DEFAULT_COUNT
    # A merged record: the levels visible per patient of it ((MPI-PID, levels), …), each decided on its own.
    levels_by_patient: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    # Keyset paging (a `_cursor`): entries strictly after `after` = (created_seq, id) in the search order,
    # counted among those with created_seq <= `through` (the newest when the first page was read), so
    # documents provided while a client pages neither repeat an entry nor move the total.
    after: tuple[int, str] | None = None
    through: int | None = None
    # Parameters ANDed that no entry can meet at once (`status=current&status=superseded`: an entry has one
    # status): the FHIR answer is an empty result, counted and paged like any other.
    matches_nothing: bool = False


@dataclass(frozen=True)
class FindRequest:
    """A parsed ITI-67 query whose patient is still a SPID: the MPI resolves it to a `DocumentQuery`."""

    spid: str  # "" when the patient is named by its Patient id (`patient_id`), which the MPI resolves
    query: DocumentQuery
    params: tuple[tuple[str, str], ...] = field(default=())
    patient_id: str | None = None  # `patient=Patient/{id}` or `subject=…`: the id PDQm answers (MPI-PID)
    cursor: str | None = None  # `_cursor` as sent: the gateway (which signed it) reads it, not the record

    def for_patient(self, pid: str) -> DocumentQuery:
        return replace(self.query, patient_pid=pid)


def parse_find_request(params: list[tuple[str, str]], *, string_hash) -> FindRequest:
    """`string_hash(param, normalised value)` gives what the store indexed for author names."""
    unknown = sorted({name for name, _ in params if name not in SUPPORTED})
    if unknown:
        raise InvalidInput(f"unknown or unsupported search parameter(s): {', '.join(unknown)}",
                           location="DocumentReference?" + "&".join(unknown))
    spid, patient_id = patient_of(params)
    alternatives = sum(len(value.split(",")) for name, value in params if name in (*TOKEN_PARAMS, *STRING_PARAMS))
    if alternatives > MAX_SEARCH_VALUES:
        raise InvalidInput(f"a search takes at most {MAX_SEARCH_VALUES} token and string values ({alternatives} "
                           "given)", location=next(n for n, _ in params if n in (*TOKEN_PARAMS, *STRING_PARAMS)))
    statuses: set[str] | None = None  # each `status` parameter ORs its values; repeated, they AND
    tokens: list[TokenFilter] = []
    dates: list[DateFilter] = []
    count, offset, cursor = DEFAULT_COUNT, 0, None
    for name, value in params:
        if name == "status":
            values = value.split(",")
            bad = [v for v in values if v not in (*DOCUMENT_STATUSES, "entered-in-error")]
            if bad:
                raise InvalidInput(f"status {bad[0]!r} is not a DocumentReference status", location="status")
            statuses = set(values) if statuses is None else statuses & set(values)
        elif name in TOKEN_PARAMS:
            tokens.append(TokenFilter(name, tuple(token(name, v) for v in value.split(","))))
        elif name in STRING_PARAMS:
            alternatives = tuple((None, string_hash(name, _normalise(v))) for v in value.split(",") if v.strip())
            if not alternatives:
                raise InvalidInput(f"{name} needs a value", location=name)
            tokens.append(TokenFilter(name, alternatives))
        elif name in DATE_PARAMS:
            dates.append(date_filter(name, value))
        elif name == "_count":
            count = integer(name, value, 0, MAX_COUNT)  # 0: the total only
        elif name == "_offset":
            offset = integer(name, value, 0, 10**9)
        elif name == "_cursor":
            if cursor is not None:
                raise InvalidInput("_cursor is given once (follow the next link as it is)", location="_cursor")
            cursor = value
    if cursor is not None and any(name == "_offset" for name, _ in params):
        raise InvalidInput("_cursor and _offset do not go together: follow the next link as it is",
                           location="_cursor")
    query = DocumentQuery("", tuple(sorted(statuses or ())), tuple(tokens), tuple(dates), None, offset, count,
                          matches_nothing=statuses == set())
    return FindRequest(spid=spid, query=query, params=tuple(params), patient_id=patient_id, cursor=cursor)


def patient_of(params: list[tuple[str, str]]) -> tuple[str, str | None]:
    """(SPID, "") or ("", the MPI's Patient id) of the one patient parameter an MHD search (ITI-67,
    ITI-66) must carry, or InvalidInput."""
    patients = [(n, v) for n, v in params if n in PATIENT_PARAMS]
    if len(patients) != 1:
        raise InvalidInput("exactly one patient.identifier=urn:oid:2.16.756.5.30.1.127.3.10.3|<EPR-SPID> (or "
                           "patient=Patient/<id>, subject=Patient/<id>) is required", location="patient.identifier")
    name, value = patients[0]
    if name == "patient.identifier":
        system, _, spid = value.partition("|")
        if system != SPID_SYSTEM or not is_spid(spid):
            raise InvalidInput(f"patient.identifier must be {SPID_SYSTEM}|<18-digit EPR-SPID>",
                               location="patient.identifier")
        return spid, None
    reference = _PATIENT_ID.fullmatch(value)
    if reference is None or (name == "subject" and reference.group(1) is None):
        raise InvalidInput(f"{name} must be Patient/<id> (the id a PDQm search answers)", location=name)
    return "", reference.group(1) or reference.group(2)


def _normalise(value: str) -> str:
    return " ".join(value.split()).casefold()


def token(name: str, value: str) -> tuple[str | None, str | None]:
    if "|" not in value:
        if not value:
            raise InvalidInput(f"{name} needs a value", location=name)
        return None, value
    system, _, code = value.partition("|")
    if not system and not code:
        raise InvalidInput(f"{name} needs a system or a code", location=name)
    return system or "", code or None


def date_filter(name: str, value: str) -> DateFilter:
    prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
    literal = value[2:] if value[:2] in DATE_PREFIXES else value
    try:
        start, end = value_range(literal)
    except InvalidDate as refused:
        raise InvalidInput(f"{name}: {refused.reason} (e.g. ge2024-01-01)", location=name) from None
    return DateFilter(name, prefix, start, end)


def integer(name: str, value: str, low: int, high: int) -> int:
    number = ascii_int(value)
    if number is None or not low <= number <= high:
        raise InvalidInput(f"{name} must be an integer from {low} to {high}", location=name)
    return number


def normalise_name(value: str) -> str:
    """How author names are normalised before hashing, on both the index and the query side."""
    return _normalise(value)
