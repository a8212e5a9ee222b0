"""Every search the gateway serves and the parameters each accepts: one list, read by the
CapabilityStatement and by `Prefer: handling=lenient`, so that neither can drift from the other.

The names come from the modules that parse them (mhd_search, list_search, identity, audit_trail); a test asks the
app with each declared parameter and checks none is refused as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.cara import identity, list_search, mhd_search
from gateway.exchanges import trail

__all__ = ["SearchParam", "Search", "SEARCHES", "COMMON", "SEARCH_RESULT", "MAX_SEARCH_PARAMETERS", "search_for_path"]

# At most this many parameters in one request (query and POST _search form together), whatever the search:
# the same bound mhd_search puts on the values one search ORs.
MAX_SEARCH_PARAMETERS = mhd_search.MAX_SEARCH_VALUES


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # FHIR search parameter type: token, string, date, number, …
    documentation: str


@dataclass(frozen=True)
class Search:
    resource: str
    path: str
    transaction: str
    params: tuple[SearchParam, ...]
    max_count: int | None = None  # a larger _count is capped to this (and the self link says so)
    zero_count: bool = False  # the search itself answers _count=0 with the total only (no entry read)
    reads_count: bool = True  # the search reads _count itself; else rest_conventions cuts its one page

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params) | {p.name for p in (*COMMON, *SEARCH_RESULT)}


# Accepted by every route (handled in gateway.http.rest_conventions before the route sees the query).
COMMON = (SearchParam("_format", "token", "json, application/json or application/fhir+json; XML answers 406"),
          SearchParam("_elements", "string", "comma-separated top-level elements; mandatory ones kept, tagged SUBSETTED"))
# Accepted by every search (gateway.http.rest_conventions).
SEARCH_RESULT = (SearchParam("_summary", "token", "count: the total only (as _count=0)"),
                 SearchParam("_total", "token", "accurate, estimate or none (the total is always exact)"),
                 SearchParam("_totalMethod", "token", "as fhirpy's count() sends it: accepted, the total is exact"))


UNPAGED_COUNT = "at most this many entries (one page, no next link; 0: the total only)"
CURSOR_DOCUMENTATION = ("paging: the opaque, signed position the next link carries (keyset on the search's "
                        "order; bound to the other parameters and the user); refused with 400 if changed")


def _mhd_param(name: str) -> SearchParam:
    if name in mhd_search.DATE_PARAMS:
        return SearchParam(name, "date", f"{name} with eq/ge/le/gt/lt prefixes")
    if name in mhd_search.STRING_PARAMS:
        return SearchParam(name, "string", f"{name}: exact, case-insensitive (names are kept as keyed hashes)")
    if name == "patient.identifier":
        return SearchParam(name, "token", "urn:oid:2.16.756.5.30.1.127.3.10.3|<EPR-SPID> (this, patient or subject)")
    if name in ("patient", "subject"):
        return SearchParam(name, "reference", "Patient/<id>: the id a PDQm search answers (same consent rules)")
    if name == "_count":
        return SearchParam(name, "number", f"page size, at most {mhd_search.MAX_COUNT}")
    if name == "_offset":
        return SearchParam(name, "number", "compatibility: skip this many matches of the result as it is now "
                                           "(the next link carries _cursor instead)")
    if name == "_cursor":
        return SearchParam(name, "string", CURSOR_DOCUMENTATION)
    return SearchParam(name, "token", f"{name} (system|code, comma = or)")


def _list_param(name: str) -> SearchParam:
    documentation = {
        "code": "required: submissionset (the record holds no Folders: folder finds nothing)",
        "status": "current (every stored SubmissionSet), retired, entered-in-error, superseded",
        "designationType": "the SubmissionSet's contentTypeCode (system|code)",
        "sourceId": "the submitting organisation's OID (urn:oid:…)",
        "identifier": "the SubmissionSet's uniqueId or entryUUID",
        "date": "when the SubmissionSet was submitted, with eq/ge/le/gt/lt prefixes",
    }
    if name in documentation:
        return SearchParam(name, "date" if name == "date" else "token", documentation[name])
    if name in list_search.STRING_PARAMS:
        return SearchParam(name, "string", f"the author's {name.rsplit('.', 1)[1]} name: exact, case-insensitive")
    return _mhd_param(name)  # the patient, _count and _cursor, as ITI-67


def _pdq_param(name: str) -> SearchParam:
    if name == "birthdate":
        return SearchParam(name, "date", "exact date (no prefixes)")
    if name == "_count":
        return SearchParam(name, "number", f"at most {identity.PDQ_MAX_COUNT}")
    if name in ("gender", "identifier"):
        return SearchParam(name, "token", f"{name}, exact")
    return SearchParam(name, "string", f"{name.removesuffix(':exact')}: exact match only (keyed hashes)")


SEARCHES: tuple[Search, ...] = (
    Search("DocumentReference", "/fhir/DocumentReference", "ITI-67 Find Document References",
           tuple(_mhd_param(n) for n in mhd_search.SUPPORTED), mhd_search.MAX_COUNT, zero_count=True),
    Search("List", "/fhir/List", "ITI-66 Find Document Lists (SubmissionSets)",
           tuple(_list_param(n) for n in list_search.SUPPORTED), mhd_search.MAX_COUNT, zero_count=True),
    Search("Patient", "/fhir/Patient", "ITI-78 Mobile Patient Demographics Query",
           tuple(_pdq_param(n) for n in identity.PDQ_SUPPORTED), identity.PDQ_MAX_COUNT, zero_count=True),
    Search("Consent", "/fhir/Consent", "PPQ-5 Retrieve Policy Sets",
           (SearchParam("patient:identifier", "token", "urn:oid:2.16.756.5.30.1.127.3.10.3|<EPR-SPID>"),
            SearchParam("identifier", "token", "the policy set id"),
            SearchParam("_count", "number", UNPAGED_COUNT)), reads_count=False),
    Search("AuditEvent", "/fhir/AuditEvent", "ITI-81 Retrieve ATNA Audit Event (CH:ATC)",
           (SearchParam("entity.identifier", "token", "urn:oid:2.16.756.5.30.1.127.3.10.3|<EPR-SPID> (required)"),
            SearchParam("date", "date", "when the event was recorded"),
            SearchParam("_count", "number", f"page size, at most {trail.MAX_COUNT}"),
            SearchParam("_cursor", "string", CURSOR_DOCUMENTATION)), trail.MAX_COUNT),
    Search("Communication", "/fhir/Communication", "the patient's notifications (emergency accesses)",
           (SearchParam("recipient.identifier", "token", "urn:oid:2.16.756.5.30.1.127.3.10.3|<EPR-SPID>"),
            SearchParam("_count", "number", UNPAGED_COUNT)), reads_count=False),
)

_BY_PATH = {search.path: search for search in SEARCHES}


def search_for_path(path: str) -> Search | None:
    return _BY_PATH.get(path.rstrip("/"))
