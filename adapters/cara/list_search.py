"""ITI-66 Find Document Lists: the MHD search parameters of a SubmissionSet List turned into a
`ListQuery`, and whether a submission set matches it.

Strict, as ITI-67: an unknown parameter or a bad value is an error the caller sees, never a silently
widened search. The record holds SubmissionSets only (no Folders): `code=folder` is a valid search
that finds nothing. Each parameter ORs its comma-separated values; parameters AND (FHIR search).
A set is matched on what its List answers (`fhir_mapping.submission_set_list`): the date is the
submission time as submitted, the identifiers its uniqueId and entryUUID.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from adapters.cara.dates import instant
from adapters.cara.errors import InvalidInput
from adapters.cara.mhd_search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    MAX_SEARCH_VALUES,
    PATIENT_PARAMS,
    DateFilter,
    date_filter,
    integer,
    normalise_name,
    patient_of,
    token,
)
from adapters.cara.model import SubmissionSet
from adapters.cara.vocabulary import LIST_TYPES_SYSTEM, RFC3986

TOKEN_PARAMS = ("code", "status", "designationType", "sourceId", "identifier")
STRING_PARAMS = ("source.family", "source.given")
SUPPORTED = (*PATIENT_PARAMS, *TOKEN_PARAMS, *STRING_PARAMS, "date", "_count", "_cursor")
# List.status (R4): a stored SubmissionSet is current (MHD maps superseded to XDS Deprecated: none here).
LIST_STATUSES = ("current", "retired", "entered-in-error", "superseded")
LIST_CODES = ("submissionset", "folder")


@dataclass(frozen=True)
class ListQuery:
    spid: str  # "" when the patient is named by its Patient id
    patient_id: str | None = None
    tokens: tuple[tuple[str, tuple[tuple[str | None, str | None], ...]], ...] = ()  # (param, alternatives)
    names: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (source.family|source.given, normalised values)
    dates: tuple[DateFilter, ...] = ()
    count: int = DEFAULT_COUNT
    cursor: str | None = None


def parse_list_request(params: list[tuple[str, str]]) -> ListQuery:
    unknown = sorted({name for name, _ in params if name not in SUPPORTED})
    if unknown:
        raise InvalidInput(f"unknown or unsupported search parameter(s): {', '.join(unknown)}",
                           location="List?" + "&".join(unknown))
    spid, patient_id = patient_of(params)
    if not any(name == "code" for name, _ in params):
        raise InvalidInput("code is required (ITI-66): code=submissionset (the record holds no Folders)",
                           location="code")
    values = sum(len(value.split(",")) for name, value in params if name in (*TOKEN_PARAMS, *STRING_PARAMS))
    if values > MAX_SEARCH_VALUES:
        raise InvalidInput(f"a search takes at most {MAX_SEARCH_VALUES} token and string values ({values} given)",
                           location=next(n for n, _ in params if n in (*TOKEN_PARAMS, *STRING_PARAMS)))
    tokens, names, dates = [], [], []
    count, cursor = DEFAULT_COUNT, None
    for name, value in params:
        if name in TOKEN_PARAMS:
            alternatives = tuple(token(name, v) for v in value.split(","))
            _check_codes(name, alternatives)
            tokens.append((name, alternatives))
        elif name in STRING_PARAMS:
            normalised = tuple(normalise_name(v) for v in value.split(",") if v.strip())
            if not normalised:
                raise InvalidInput(f"{name} needs a value", location=name)
            names.append((name, normalised))
        elif name == "date":
            dates.append(date_filter(name, value))
        elif name == "_count":
            count = integer(name, value, 0, MAX_COUNT)  # 0: the total only
        elif name == "_cursor":
            if cursor is not None:
                raise InvalidInput("_cursor is given once (follow the next link as it is)", location="_cursor")
            cursor = value
    return ListQuery(spid, patient_id, tuple(tokens), tuple(names), tuple(dates), count, cursor)


def _check_codes(name: str, alternatives: tuple[tuple[str | None, str | None], ...]) -> None:
    """The values of a closed code system are checked: a misspelt one is a 400, not an empty answer."""
    if name == "status":
        bad = [code for system, code in alternatives if system or code not in LIST_STATUSES]
        if bad:
            raise InvalidInput(f"status takes a List status code without a system: {', '.join(LIST_STATUSES)}",
                               location="status")
    elif name == "code":
        bad = [code for system, code in alternatives
               if system not in (None, "", LIST_TYPES_SYSTEM) or code not in LIST_CODES]
        if bad:
            raise InvalidInput(f"code is submissionset or folder (system {LIST_TYPES_SYSTEM})", location="code")


def matches(query: ListQuery, subset: SubmissionSet, *, answered_date: str) -> bool:
    """Whether the set (as its List answers it; `answered_date`: List.date) meets every parameter."""
    for name, alternatives in query.tokens:
        if not any(_token_matches(name, system, code, subset) for system, code in alternatives):
            return False
    for name, values in query.names:
        part = "family" if name == "source.family" else "given"
        held = {normalise_name(n) for author in subset.authors for n in getattr(author, part)}
        if not held & set(values):
            return False
    when = instant(answered_date) if query.dates else None
    return all(when is not None and _date_matches(date, when) for date in query.dates)


def _token_matches(name: str, system: str | None, code: str | None, subset: SubmissionSet) -> bool:
    if name == "code":
        return code == "submissionset"
    if name == "status":
        return code == "current"
    if name == "designationType":
        designation = subset.content_type
        return designation is not None and _coded(system, code, designation.system, designation.code)
    if name == "sourceId":
        return _coded(system, code, RFC3986, subset.source_id)
    identifiers = (subset.unique_id, subset.entry_uuid or f"urn:uuid:{subset.submission_set_id}")
    return any(_coded(system, code, RFC3986, value) for value in identifiers)


def _coded(system: str | None, code: str | None, held_system: str | None, held_code: str) -> bool:
    """FHIR token semantics: `code` any system, `system|code`, `|code` (no system), `system|` any code."""
    if system is not None and system != (held_system or ""):
        return False
    return code is None or code == held_code


def _date_matches(date: DateFilter, when: datetime) -> bool:
    """As ITI-67 compares DocumentReference.date (search_sql): the value against the search value's range."""
    return {"eq": date.start <= when < date.end, "ge": when >= date.start, "gt": when >= date.end,
            "le": when < date.end, "lt": when < date.start}[date.prefix]
