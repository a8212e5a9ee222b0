"""Who looked: the access trail (ITI-81 through `gateway.exchanges.trail`) with emergency accesses
highlighted, filters by date and kind, paging; and the notifications, marked read once shown."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from adapters.cara.dates import InvalidDate, parse_fhir, parse_full_date
from adapters.cara.vocabulary import SPID_SYSTEM
from gateway.exchanges.trail import MAX_COUNT
from gateway.pages.i18n import N_
from gateway.portal.pages import portal, render, signed_in
from gateway.http.routes.common import base_url, run_use_case
from adapters.cara.identifier_syntax import ascii_int

PAGE_SIZE = 25
KINDS = {"documents": "ATC_DOC_", "sharing": "ATC_POL_", "trail": "ATC_LOG_", "emergency": None}
# What the patient reads for each CH:ATC event type (catalogue messages).
WHAT = {
    "ATC_DOC_CREATE": N_("added a document"), "ATC_DOC_READ": N_("opened a document"),
    "ATC_DOC_UPDATE": N_("changed a document"), "ATC_DOC_DELETE": N_("removed a document"),
    "ATC_DOC_SEARCH": N_("searched your documents"),
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
    since, until = _day(query.get("from")), _day(query.get("to"))
    kind = query.get("kind", "") if query.get("kind", "") in KINDS else ""
    page = max(ascii_int(query.get("page", "1")) or 1, 1)
    params = [("entity.identifier", f"{SPID_SYSTEM}|{principal.patient_spid}")]
    if since:
        params.append(("date", f"ge{since.isoformat()}"))
    if until:
        params.append(("date", f"le{until.isoformat()}"))
    entries = await _whole_trail(request, services, principal, params)
    events = [event_row(e["resource"]) for e in reversed(entries)]  # newest first
    if kind == "emergency":
        events = [e for e in events if e["emergency"]]
    elif kind:
        events = [e for e in events if e["code"].startswith(KINDS[kind])]
    pages = max(1, -(-len(events) // PAGE_SIZE))
    shown = events[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    notices = await _notifications(request, principal)
    return render(request, "trail.html", events=shown, total=len(events), page=page, pages=pages, kind=kind,
                  kinds=KINDS, since=since.isoformat() if since else "", until=until.isoformat() if until else "",
                  notices=notices, what=WHAT, roles=ROLES)


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


async def _notifications(request: Request, principal) -> list[dict]:
    """The notifications, each flagged new if not seen before; then all of them are marked seen."""
    services = portal(request).services
    spid = principal.patient_spid
    bundle = await run_use_case(request, services.policies.notifications, principal=principal,
                                params=[("recipient.identifier", f"{SPID_SYSTEM}|{spid}")], base_url=base_url(request))
    seen = await run_use_case(request, services.portal.seen_notifications, principal=principal, spid=spid)
    notices = []
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        notices.append({"id": resource["id"], "sent": _moment(resource.get("sent")),
                        "text": (resource.get("payload") or [{}])[0].get("contentString", ""),
                        "new": resource["id"] not in seen})
    unseen = [n["id"] for n in notices if n["new"]]
    if unseen:
        await run_use_case(request, services.portal.mark_notifications_seen, principal=principal, spid=spid,
                           notification_ids=unseen)
    return notices


def event_row(event: dict) -> dict:
    code = event["subtype"][0]["code"]
    requestor = next((a for a in event.get("agent", []) if a.get("requestor")), {})
    role = ((requestor.get("role") or [{}])[0].get("coding") or [{}])[0].get("code", "")
    purpose = ((requestor.get("purposeOfUse") or [{}])[0].get("coding") or [{}])[0].get("code", "")
    organisation = next((a.get("name") for a in event.get("agent", [])
                         if ((a.get("role") or [{}])[0].get("coding") or [{}])[0].get("code") == "GRP"), "")
    documents = []
    for entity in event.get("entity", []):
        details = {d.get("type"): d.get("valueString") or _decoded(d.get("valueBase64Binary"))
                   for d in entity.get("detail", [])}
        if "title" in details:
            documents.append(details["title"])
    return {"code": code, "when": _moment(event.get("recorded")), "who": requestor.get("name", ""), "role": role,
            "institution": organisation, "emergency": purpose == "EMER", "documents": documents,
            "outcome_ok": event.get("outcome") == "0"}


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


def _day(value: str | None) -> date | None:
    """A `YYYY-MM-DD` (the page's date fields, a served date's first ten characters), else None."""
    try:
        return parse_full_date(value) if value else None
    except InvalidDate:
        return None
