"""Who looked: the access trail (ITI-81 through `gateway.exchanges.trail`) with emergency accesses
highlighted, filters by date and kind, paging; and the emergency notifications, marked read once shown.

Others' accesses first: by default the page leaves out what the signed-in person did themselves (each
of their own visits reads the record too, and is in the trail: opening the list is a search, a
document's details a metadata read, this page a read of the trail). One click shows them as well;
the page says how many it left out."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from adapters.cara.dates import InvalidDate, parse_fhir
from adapters.cara.vocabulary import SPID_SYSTEM
from consent.roles import PROFESSIONALS
from gateway.exchanges.trail import MAX_COUNT
from gateway.http.routes.common import base_url, run_use_case
from gateway.portal.directory import Directory
from gateway.portal.document_types import OTHER, type_label
from gateway.portal.filters import past_the_end, read_filters
from gateway.pages.i18n import N_
from gateway.portal.pages import portal, render, signed_in
from gateway.portal.routes_notices import emergency_notices

PAGE_SIZE = 25
KINDS = {"documents": "ATC_DOC_", "sharing": "ATC_POL_", "trail": "ATC_LOG_", "emergency": None}
# What the patient reads for each CH:ATC event type (catalogue messages).
WHAT = {
    "ATC_DOC_CREATE": N_("added a document"), "ATC_DOC_READ": N_("opened a document"),
    "ATC_DOC_UPDATE": N_("changed a document"), "ATC_DOC_DELETE": N_("removed a document"),
    "ATC_DOC_SEARCH": N_("searched your documents"), "ATC_DOC_DETAILS": N_("looked at a document's details"),
    "ATC_POL_CREATE_AUT_PART_AL": N_("gave access to your record"), "ATC_POL_UPDATE_AUT_PART_AL": N_("changed an access"),
    "ATC_POL_REMOVE_AUT_PART_AL": N_("removed an access"), "ATC_POL_DEF_CONFLEVEL": N_("set the level of new documents"),
    "ATC_POL_DIS_EMER_USE": N_("switched emergency access off"), "ATC_POL_ENA_EMER_USE": N_("set emergency access"),
    "ATC_POL_INCL_BLACKLIST": N_("blocked a professional"), "ATC_POL_EXL_BLACKLIST": N_("unblocked a professional"),
    "ATC_LOG_READ": N_("read this trail"), "ATC_HPD_GROUP_ENTRY_NOTIFY": N_("joined a group with access"),
}
ROLES = {"PAT": N_("Patient"), "REP": N_("Representative"), "HCP": N_("Healthcare professional"), "ASS": N_("Assistant"),
         "TCU": N_("Technical user"), "DADM": N_("Document administrator"), "PADM": N_("Policy administrator")}


TRAIL_PAGES_READ = 50  # at most 5,000 entries of one period on the page


@signed_in
async def trail(request: Request, principal) -> Response:
    services = portal(request).services
    query = request.query_params
    filters = read_filters(query)
    kind = query.get("kind", "") if query.get("kind", "") in KINDS else ""
    everyone = query.get("who") == "all"  # default: professionals and others, one's own accesses left out
    events, own, problem, status = [], 0, filters.problem, filters.status
    if problem is None:
        params = [("entity.identifier", f"{SPID_SYSTEM}|{principal.patient_spid}")]
        if filters.since:
            params.append(("date", f"ge{filters.since.isoformat()}"))
        if filters.until:
            params.append(("date", f"le{filters.until.isoformat()}"))
        entries = await _whole_trail(request, services, principal, params)
        directory = portal(request).directory
        events = [event_row(e["resource"], principal=principal, directory=directory) for e in reversed(entries)]
        if kind == "emergency":
            events = [e for e in events if e["emergency"]]
        elif kind:
            events = [e for e in events if e["code"].startswith(KINDS[kind])]
        own = sum(1 for e in events if e["own"])
        if not everyone:
            events = [e for e in events if not e["own"]]
    pages = max(1, -(-len(events) // PAGE_SIZE))
    if problem is None and (problem := past_the_end(filters, pages)):
        status = 404
    shown = events[(filters.page - 1) * PAGE_SIZE: filters.page * PAGE_SIZE]
    notices = await emergency_notices(request, principal)
    unseen = [n["id"] for n in notices if not n["seen"]]
    if unseen:  # shown here: marked seen (the landing page's notice stops showing them)
        await run_use_case(request, services.portal.mark_notifications_seen, principal=principal,
                           spid=principal.patient_spid, notification_ids=unseen)
    return render(request, "trail.html", status, events=shown, total=len(events), own=own, everyone=everyone,
                  page=filters.page, pages=pages, kind=kind, kinds=KINDS, typed=filters.typed, problem=problem,
                  problem_action="filter", notices=notices, what=WHAT, roles=ROLES)


async def _whole_trail(request: Request, services, principal, params: list[tuple[str, str]]) -> list[dict]:
    """Every entry of the period, read through ITI-81 in its largest pages (each read is audited, as
    over FHIR): the page filters by kind and pages newest first itself. Bounded by TRAIL_PAGES_READ."""
    entries: list[dict] = []
    paging = [("_count", str(MAX_COUNT))]
    for _ in range(TRAIL_PAGES_READ):
        bundle = await run_use_case(request, services.trail.read, principal=principal, base_url=base_url(request),
                                    params=[*params, *paging])
        entries.extend(bundle.get("entry", []))
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not following:
            break
        # The next link's cursor: the trail grows with each of these reads, an offset would drift.
        paging = [(n, v) for n, v in parse_qsl(urlsplit(following[0]).query) if n in ("_count", "_cursor")]
    return entries


def event_row(event: dict, *, principal, directory: Directory) -> dict:
    """One CH:ATC event as the page lists it. `own`: done by the signed-in person themselves (the
    patient, or this very representative), left out unless they ask for their own accesses too."""
    code = event["subtype"][0]["code"]
    requestor = next((a for a in event.get("agent", []) if a.get("requestor")), {})
    role = ((requestor.get("role") or [{}])[0].get("coding") or [{}])[0].get("code", "")
    purpose = ((requestor.get("purposeOfUse") or [{}])[0].get("coding") or [{}])[0].get("code", "")
    user_id = requestor.get("altId") or ""
    professional = role in PROFESSIONALS
    organisation = next((a.get("name") for a in event.get("agent", [])
                         if ((a.get("role") or [{}])[0].get("coding") or [{}])[0].get("code") == "GRP"), "")
    documents, subjects = [], []
    for entity in event.get("entity", []):
        details = {d.get("type"): d.get("valueString") or _decoded(d.get("valueBase64Binary"))
                   for d in entity.get("detail", [])}
        if "EprDocumentTypeCode" in details or "title" in details:
            documents.append(type_label(None, details.get("EprDocumentTypeCode")) or OTHER)
        elif code.startswith("ATC_POL") and entity.get("name"):  # whom the policy names (professional, group…)
            value = entity.get("what", {}).get("identifier", {}).get("value") or ""
            subjects.append(directory.name_of(value) or entity["name"])
    # A search naming one document is the read of its details (a DocumentReference read, ITI-67).
    what = "ATC_DOC_DETAILS" if code == "ATC_DOC_SEARCH" and documents else code
    name = (directory.name_of(user_id) if professional else None) or requestor.get("name", "")
    return {"code": code, "what": what, "when": _moment(event.get("recorded")), "who": name, "role": role,
            "institution": organisation or (directory.organisation_of(user_id) if professional else "") or "",
            "emergency": purpose == "EMER", "documents": documents, "subjects": subjects,
            "outcome_ok": event.get("outcome") == "0",
            "own": role == principal.role and user_id == principal.user_id}


def _decoded(value: str | None) -> str:
    try:
        return base64.b64decode(value).decode() if value else ""
    except (ValueError, UnicodeDecodeError):
        return ""


def _moment(value: str | None) -> datetime | None:
    """A served FHIR dateTime/instant as an aware UTC datetime (the page shows it in Swiss time), else None."""
    try:
        return parse_fhir(value, kind="dateTime").start.replace(tzinfo=UTC) if value else None
    except InvalidDate:
        return None
