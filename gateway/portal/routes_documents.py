"""My documents: the list (ITI-67), one document's details (DocumentReference read), opening it
(ITI-68) and changing its confidentiality (the metadata-update use-case) — each through the
use-case FHIR clients use, as the signed-in patient or representative."""

from __future__ import annotations

import re
from datetime import date

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from adapters.cara.dates import InvalidDate, parse_full_date
from adapters.cara.errors import NotFound
from adapters.cara.vocabulary import SPID_SYSTEM
from gateway.pages.i18n import N_
from gateway.portal.pages import portal, render, signed_in
from gateway.http.routes.common import base_url, run_use_case
from adapters.cara.identifier_syntax import ascii_int

PAGE_SIZE = 20
# Types a patient can filter by (SNOMED CT, ch-term), shown with their catalogue names.
TYPES = {"373942005": N_("Discharge summary"), "4241000179101": N_("Laboratory report"), "371526002": N_("Operative report"),
         "371531000": N_("Report of clinical encounter"), "419891008": N_("Record artifact"),
         "422735006": N_("Summary clinical document")}
# Facility types an institution is shown by when the author names none (their catalogue names).
FACILITIES = (N_("Hospital"), N_("General practice premises"))
LEVELS = {"17621005": "normal", "263856008": "restricted", "1141000195107": "secret"}
INLINE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"})
DONE = frozenset({"confidentiality"})


@signed_in
async def documents(request: Request, principal) -> Response:
    query = request.query_params
    chosen_type = query.get("type", "")
    since, until = _day(query.get("from")), _day(query.get("to"))
    page = max(ascii_int(query.get("page", "1")) or 1, 1)
    params = [("patient.identifier", f"{SPID_SYSTEM}|{principal.patient_spid}"), ("status", "current")]
    if chosen_type in TYPES:
        params.append(("type", f"http://snomed.info/sct|{chosen_type}"))
    if since:
        params.append(("date", f"ge{since.isoformat()}"))
    if until:
        params.append(("date", f"le{until.isoformat()}"))
    params += [("_count", str(PAGE_SIZE)), ("_offset", str((page - 1) * PAGE_SIZE))]
    answer = await run_use_case(request, portal(request).services.exchange.find, principal=principal, params=params,
                                base_url=base_url(request))
    bundle = orjson.loads(answer)
    rows = [document_row(entry["resource"]) for entry in bundle.get("entry", [])]
    total = bundle.get("total", 0)
    return render(request, "documents.html", rows=rows, total=total, page=page,
                  pages=max(1, -(-total // PAGE_SIZE)), types=TYPES, chosen_type=chosen_type,
                  since=since.isoformat() if since else "", until=until.isoformat() if until else "",
                  done=query.get("done") if query.get("done") in DONE else None)


@signed_in
async def document(request: Request, principal) -> Response:
    resource = await run_use_case(request, portal(request).services.exchange.read_reference, principal=principal,
                                  entry_id=request.path_params["entry_id"], base_url=base_url(request))
    return render(request, "document.html", row=document_row(resource),
                  can_change=getattr(portal(request).services, "metadata", None) is not None,
                  done=request.query_params.get("done") in DONE)


@signed_in
async def content(request: Request, principal) -> Response:
    retrieved = await run_use_case(request, portal(request).services.exchange.retrieve, principal=principal,
                                   entry_id=request.path_params["entry_id"], base_url=base_url(request))
    kind = retrieved.content_type.split(";")[0].strip().lower()
    disposition = "inline" if kind in INLINE_TYPES else "attachment"
    filename = _filename(retrieved.entry.type_code.display or "document", kind)
    return Response(retrieved.content, media_type=kind if kind in INLINE_TYPES else "application/octet-stream",
                    headers={"Content-Disposition": f'{disposition}; filename="{filename}"'})


@signed_in
async def change_confidentiality(request: Request, principal, form: dict[str, str]) -> Response:
    entry_id = request.path_params["entry_id"]
    level = form.get("level", "")
    metadata = getattr(portal(request).services, "metadata", None)
    if level not in ("normal", "restricted", "secret"):
        raise NotFound("no such level")  # a crafted form: answered like a missing document
    if metadata is None:
        return render(request, "error.html", 503, title_key="unavailable",
                      message_key=N_("Changing a document's confidentiality is not available yet. Nothing was changed."))
    await run_use_case(request, metadata.change_confidentiality, principal=principal, entry_id=entry_id, level=level)
    return RedirectResponse(f"/portal/documents/{entry_id}?done=confidentiality", status_code=303)


def document_row(resource: dict) -> dict:
    """What the page shows of a DocumentReference: title from the type, date, author, institution, level."""
    type_coding = (resource.get("type", {}).get("coding") or [{}])[0]
    contained = {c.get("id"): c for c in resource.get("contained", [])}
    authors, institutions = [], []
    for author in resource.get("author", []):
        found = contained.get((author.get("reference") or "").lstrip("#"), {})
        if found.get("resourceType") == "Organization":
            institutions.append(found.get("name", ""))
            continue
        for name in found.get("name", []):
            authors.append(" ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")]).strip())
    facility = (resource.get("context", {}).get("facilityType", {}).get("coding") or [{}])[0]
    label = next((LEVELS[c["code"]] for s in resource.get("securityLabel", []) for c in s.get("coding", [])
                  if c.get("code") in LEVELS), "normal")
    attachment = (resource.get("content") or [{}])[0].get("attachment", {})
    when = resource.get("date") or attachment.get("creation") or ""
    # The title comes from the type code (a sender's display text may not match its code).
    title = TYPES.get(type_coding.get("code", "")) or type_coding.get("display") or type_coding.get("code", "")
    return {"id": resource["id"], "type": title,
            "date": _day(when[:10]), "authors": ", ".join(a for a in authors if a),
            "institution": ", ".join(i for i in institutions if i) or facility.get("display", ""),
            "level": label, "content_type": attachment.get("contentType", ""),
            "inline": attachment.get("contentType", "") in INLINE_TYPES}


def _day(value: str | None) -> date | None:
    """A `YYYY-MM-DD` (the page's date fields, a served date's first ten characters), else None."""
    try:
        return parse_full_date(value) if value else None
    except InvalidDate:
        return None


def _filename(title: str, kind: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-")[:60] or "document"
    suffix = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
              "image/webp": ".webp", "text/plain": ".txt", "application/xml": ".xml", "text/xml": ".xml"}.get(kind, "")
    return stem + suffix
