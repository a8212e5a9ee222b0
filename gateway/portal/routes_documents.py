"""My documents: the landing page (the list through ITI-67, with a notice of every emergency access not
yet seen), one document's details (a DocumentReference read: metadata only), opening it (ITI-68) and
changing its confidentiality (CH:MHD-1), explained and confirmed like every other change — each through
the use-case FHIR clients use, as the signed-in patient or representative."""

from __future__ import annotations

import re

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from adapters.cara.errors import NotFound
from adapters.cara.vocabulary import SPID_SYSTEM
from gateway.http.document_headers import INLINE_TYPES
from gateway.http.routes.common import base_url, run_use_case
from gateway.portal.access_summary import summarise
from gateway.portal.document_rows import document_row
from gateway.portal.document_types import filter_choices, search_token
from gateway.portal.filters import past_the_end, read_filters
from gateway.pages.i18n import N_
from gateway.portal.pages import portal, render, signed_in
from gateway.portal.routes_notices import emergency_notices
from gateway.portal.routes_sharing import policies_of
from gateway.portal.sharing import FormProblem

PAGE_SIZE = 20
LEVELS = ("normal", "restricted", "secret")
DONE = frozenset({"confidentiality", "notices"})
# What a change of level means, said before it is saved (the effect per professional follows it).
LEVEL_EFFECTS = {
    "secret": N_("This document will be secret: only you and your representatives will see it; no professional, "
                 "not even in an emergency."),
    "restricted": N_("This document will be restricted: only the professionals you gave restricted access will "
                     "see it, and in an emergency only if you allowed restricted documents for emergencies."),
    "normal": N_("This document will be normal: the professionals you gave access will see it, and any "
                 "professional in an emergency if emergency access is on."),
}


@signed_in
async def documents(request: Request, principal) -> Response:
    query = request.query_params
    filters = read_filters(query)
    chosen_type = query.get("type", "") if search_token(query.get("type", "")) else ""
    rows, total, problem, status = [], 0, filters.problem, filters.status
    if problem is None:
        params = [("patient.identifier", f"{SPID_SYSTEM}|{principal.patient_spid}"), ("status", "current")]
        if chosen_type:
            params.append(("type", search_token(chosen_type)))
        if filters.since:
            params.append(("date", f"ge{filters.since.isoformat()}"))
        if filters.until:
            params.append(("date", f"le{filters.until.isoformat()}"))
        params += [("_count", str(PAGE_SIZE)), ("_offset", str((filters.page - 1) * PAGE_SIZE))]
        answer = await run_use_case(request, portal(request).services.exchange.find, principal=principal,
                                    params=params, base_url=base_url(request))
        bundle = orjson.loads(answer)
        directory = portal(request).directory
        rows = [document_row(entry["resource"], directory=directory) for entry in bundle.get("entry", [])]
        total = bundle.get("total", 0)
    pages = max(1, -(-total // PAGE_SIZE))
    if problem is None and (problem := past_the_end(filters, pages)):
        status = 404
    notices = [n for n in await emergency_notices(request, principal) if not n["seen"]]
    return render(request, "documents.html", status, rows=rows, total=total, page=filters.page, pages=pages,
                  types=filter_choices(), chosen_type=chosen_type, typed=filters.typed, problem=problem,
                  problem_action="filter", notices=notices,
                  done=query.get("done") if query.get("done") in DONE else None)


@signed_in
async def document(request: Request, principal) -> Response:
    return await _document_page(request, principal, problem=None, status=200)


async def _document_page(request: Request, principal, *, problem: FormProblem | None, status: int,
                         chosen: str | None = None) -> Response:
    resource = await run_use_case(request, portal(request).services.exchange.read_reference, principal=principal,
                                  entry_id=request.path_params["entry_id"], base_url=base_url(request))
    row = document_row(resource, directory=portal(request).directory)
    return render(request, "document.html", status, row=row, problem=problem, problem_action="confidentiality",
                  chosen=chosen or row["level"], done=request.query_params.get("done") in DONE)


@signed_in
async def content(request: Request, principal) -> Response:
    retrieved = await run_use_case(request, portal(request).services.exchange.retrieve, principal=principal,
                                   entry_id=request.path_params["entry_id"], base_url=base_url(request))
    kind = retrieved.content_type.split(";")[0].strip().lower()
    # One rule for which types a browser may show (the FHIR face's ITI-68 list): passive types only.
    inline = kind in INLINE_TYPES
    media_type = _text_type(retrieved.content_type, retrieved.content) if kind == "text/plain" else kind
    filename = _filename(retrieved.entry.type_code.display or "document", kind)
    return Response(retrieved.content, media_type=media_type if inline else "application/octet-stream",
                    headers={"Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{filename}"'})


@signed_in
async def preview_confidentiality(request: Request, principal, form: dict[str, str]) -> Response:
    """The change of level explained (what it means, who gains or loses the document) before it is saved."""
    entry_id, level = request.path_params["entry_id"], _level(form)
    services = portal(request).services
    resource = await run_use_case(request, services.exchange.read_reference, principal=principal,
                                  entry_id=entry_id, base_url=base_url(request))
    current = document_row(resource, directory=portal(request).directory)["level"]
    if level == current:
        problem = FormProblem(N_("This document already has this level: choose another one."), "level")
        return await _document_page(request, principal, problem=problem, status=400, chosen=level)
    summary = summarise(await policies_of(request, principal), spid=principal.patient_spid,
                        today=services.policies.today(), name_of=portal(request).directory.name_of)
    return render(request, "confirm.html", message=LEVEL_EFFECTS[level], values={},
                  consequences=_consequences(summary, current, level), fields={"level": level}, person=None,
                  apply_url=f"/portal/documents/{entry_id}/confidentiality", cancel_url=f"/portal/documents/{entry_id}")


@signed_in
async def change_confidentiality(request: Request, principal, form: dict[str, str]) -> Response:
    entry_id, level = request.path_params["entry_id"], _level(form)
    await run_use_case(request, portal(request).services.metadata.change_confidentiality, principal=principal,
                       entry_id=entry_id, level=level)
    return RedirectResponse(f"/portal/documents/{entry_id}?done=confidentiality", status_code=303)


def _level(form: dict[str, str]) -> str:
    if form.get("level", "") not in LEVELS:
        raise NotFound("no such level")  # a crafted form: answered like a missing document
    return form["level"]


def _consequences(summary, current: str, level: str) -> list[tuple[str, str]]:
    """Who (by name) loses or gains the document, and what changes in an emergency."""
    before, after = summary.sees(current), summary.sees(level)
    said = []
    losing, gaining = [n for n in before if n not in after], [n for n in after if n not in before]
    if losing:
        said.append((N_("No longer able to see it: %(names)s."), ", ".join(losing)))
    if gaining:
        said.append((N_("Able to see it from now on: %(names)s."), ", ".join(gaining)))
    if not losing and not gaining:
        said.append((N_("No professional you gave access gains or loses it."), ""))
    if current in summary.emergency and level not in summary.emergency:
        said.append((N_("In an emergency, no professional will see it any more."), ""))
    elif level in summary.emergency and current not in summary.emergency:
        said.append((N_("In an emergency, any professional you have not blocked will be able to see it."), ""))
    return said


def _text_type(declared: str, content: bytes) -> str:
    """text/plain with the charset it was stored with, else UTF-8 when the bytes are UTF-8, else
    windows-1252 (the legacy platform's texts): shown as written, never as mojibake."""
    if "charset=" in declared.lower():
        return declared
    try:
        content.decode("utf-8")
        return "text/plain; charset=utf-8"
    except UnicodeDecodeError:
        return "text/plain; charset=windows-1252"


def _filename(stem: str, kind: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-")[:60] or "document"
    suffix = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
              "image/webp": ".webp", "text/plain": ".txt", "application/xml": ".xml", "text/xml": ".xml"}.get(kind, "")
    return stem + suffix
