"""Finding a patient (ITI-78: by name and birth date, by EPR-SPID, by a local id of one's institution),
the documents of that patient the professional may see (ITI-67, exactly as a FHIR client with the same
principal finds them), opening one (ITI-68), and claiming or ending an emergency access."""

from __future__ import annotations

import math
from datetime import date
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from adapters.cara import value_sets
from adapters.cara.dates import InvalidDate, parse_full_date
from adapters.cara.errors import InvalidInput
from adapters.cara.identifier_syntax import ascii_int, is_spid
from adapters.cara.vocabulary import SNOMED, SPID_SYSTEM
from gateway.exchanges.professionals import professional_principal
from gateway.hcp.documents_view import document_row, institutions_of
from gateway.hcp.site import hcp, person_of, signed_in
from gateway.http.document_headers import retrieve_headers
from gateway.http.routes.common import base_url, run_use_case
from gateway.pages.i18n import N_

PAGE_SIZE = 20
SEARCH_PAGE = 100  # ITI-67's largest page: the whole result is read, then filtered by institution and paged
SEARCH_PAGES = 10  # at most 1,000 documents of one patient and filter
# The Patient elements a too-many answer may ask for, as the search form names them.
WANTED = {"Patient.name.family": N_("the family name"), "Patient.name.given": N_("the given name"),
          "Patient.birthDate": N_("the birth date"), "Patient.gender": N_("the gender"),
          "Patient.identifier": N_("an identifier (EPR-SPID or your institution's patient number)")}


@signed_in
async def patients(request: Request, principal) -> Response:
    site, query = hcp(request), request.query_params
    mode = query.get("by", "")
    values = {k: query.get(k, "").strip() for k in ("family", "given", "birthdate", "gender", "spid", "local_id")}
    params, problem = _search_params(mode, values, request.state.page_session.local_id_system)
    found, status = None, 200
    if params and not problem:
        try:
            found = await run_use_case(request, site.services.professionals.find_patients, principal=principal,
                                       params=params, base_url=base_url(request))
        except InvalidInput:
            problem, status = N_("These search values are not valid. Check them and search again."), 400
    elif problem:
        status = 400
    return site.render(request, "patients.html", status, mode=mode or "name", values=values, found=found,
                       problem=problem, wanted=WANTED, local_id_system=request.state.page_session.local_id_system)


def _search_params(mode: str, values: dict[str, str], local_system: str) -> tuple[list[tuple[str, str]], str | None]:
    if mode == "name":
        if not values["family"] or not values["birthdate"]:
            return [], N_("Enter the family name and the birth date.")
        try:
            parse_full_date(values["birthdate"])
        except InvalidDate:
            return [], N_("Enter the birth date as a date.")
        params = [("family", values["family"]), ("birthdate", values["birthdate"])]
        params += [("given", values["given"])] if values["given"] else []
        params += [("gender", values["gender"])] if values["gender"] in ("female", "male", "other") else []
        return params, None
    if mode == "spid":
        if not is_spid(values["spid"]):
            return [], N_("An EPR-SPID has 18 digits.")
        return [("identifier", f"{SPID_SYSTEM}|{values['spid']}")], None
    if mode == "local":
        if not local_system:
            return [], N_("Your institution's patient numbers are not known to this page.")
        if not values["local_id"]:
            return [], N_("Enter your institution's patient number.")
        return [("identifier", f"{local_system}|{values['local_id']}")], None
    return [], None


@signed_in
async def documents(request: Request, principal) -> Response:
    site, query, pid = hcp(request), request.query_params, request.path_params["pid"]
    acting = site.acting_on(request, pid)
    patient = await run_use_case(request, site.services.professionals.patient, principal=acting, pid=pid)
    lang = site.language_of(request)
    chosen = {k: query.get(k, "") for k in ("type", "class", "from", "to", "institution")}
    params = [("patient.identifier", f"{SPID_SYSTEM}|{patient.spid}"), ("status", "current")]
    if value_sets.concept("type", chosen["type"]):
        params.append(("type", f"{SNOMED}|{chosen['type']}"))
    if value_sets.concept("class", chosen["class"]):
        params.append(("category", f"{SNOMED}|{chosen['class']}"))
    since, until = _day(chosen["from"]), _day(chosen["to"])
    params += [("date", f"ge{since.isoformat()}")] if since else []
    params += [("date", f"le{until.isoformat()}")] if until else []
    entries = await _whole_search(request, acting, params)
    rows = [document_row(e["resource"], lang) for e in entries]
    institutions = institutions_of(rows)
    if chosen["institution"]:
        rows = [r for r in rows if chosen["institution"] in r["institutions"]]
    page = max(ascii_int(query.get("page", "1")) or 1, 1)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    emergency = site.emergency_of(request.state.page_session, pid)
    paging = urlencode({k: v for k, v in chosen.items() if v})
    return site.render(request, "documents.html", patient=patient, rows=rows[(page - 1) * PAGE_SIZE:page * PAGE_SIZE],
                       total=len(rows), page=min(page, pages), pages=pages, chosen=chosen, paging=paging,
                       types=_choices("type", lang), classes=_choices("class", lang), institutions=institutions,
                       emergency=emergency, minutes_left=_minutes_left(site, emergency),
                       done=query.get("done") if query.get("done") in ("uploaded", "emergency") else None)


async def _whole_search(request: Request, principal, params: list[tuple[str, str]]) -> list[dict]:
    """Every entry ITI-67 finds, page after page by its own next links (each read audited as over FHIR)."""
    exchange = hcp(request).services.exchange
    entries: list[dict] = []
    paging = [("_count", str(SEARCH_PAGE))]
    for _ in range(SEARCH_PAGES):
        bundle = orjson.loads(await run_use_case(request, exchange.find, principal=principal,
                                                 params=[*params, *paging], base_url=base_url(request)))
        entries.extend(bundle.get("entry", []))
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not following:
            break
        paging = [(n, v) for n, v in parse_qsl(urlsplit(following[0]).query) if n in ("_count", "_cursor")]
    return entries


@signed_in
async def content(request: Request, principal) -> Response:
    site, pid, entry_id = hcp(request), request.path_params["pid"], request.path_params["entry_id"]
    retrieved = await run_use_case(request, site.services.professionals.open_document,
                                   principal=site.acting_on(request, pid), pid=pid, entry_id=entry_id,
                                   base_url=base_url(request))
    media_type, headers = retrieve_headers(retrieved.content_type, entry_id=entry_id)
    return Response(retrieved.content, media_type=media_type, headers=headers)


@signed_in
async def emergency_form(request: Request, principal) -> Response:
    site, pid = hcp(request), request.path_params["pid"]
    patient = await run_use_case(request, site.services.professionals.patient, principal=principal, pid=pid)
    return site.render(request, "emergency.html", patient=patient, minutes=site.emergency_minutes, problem=None,
                       reason="")


@signed_in
async def start_emergency(request: Request, principal, form: dict[str, str]) -> Response:
    site, pid = hcp(request), request.path_params["pid"]
    patient = await run_use_case(request, site.services.professionals.patient, principal=principal, pid=pid)
    try:
        emergency = professional_principal(person_of(request.state.page_session), issuer=principal.issuer,
                                           emergency_reason=form.get("reason", ""), patient_spid=patient.spid)
    except InvalidInput:
        return site.render(request, "emergency.html", 400, patient=patient, minutes=site.emergency_minutes,
                           reason=form.get("reason", ""),
                           problem=N_("Give the reason for the emergency access, in 10 to 300 characters."))
    await run_use_case(request, site.services.professionals.emergency, principal=emergency, pid=pid)
    site.start_emergency(request, pid=pid, spid=patient.spid, reason=emergency.emergency_reason)
    return RedirectResponse(f"/hcp/patients/{pid}?done=emergency", status_code=303)


@signed_in
async def end_emergency(request: Request, principal, form: dict[str, str]) -> Response:
    hcp(request).end_emergency(request)
    return RedirectResponse(f"/hcp/patients/{request.path_params['pid']}", status_code=303)


def _choices(kind: str, lang: str) -> list[tuple[str, str]]:
    return sorted(((c.code.code, c.name(lang)) for c in value_sets.value_set(kind)), key=lambda c: c[1].casefold())


def _minutes_left(site, emergency: dict | None) -> int:
    return 0 if emergency is None else max(1, math.ceil((emergency["until"] - site.sessions.clock()) / 60))


def _day(value: str | None) -> date | None:
    try:
        return parse_full_date(value) if value else None
    except InvalidDate:
        return None
