"""Signing in and out, and the language switcher.

Production: OpenID Connect (`gateway.pages.oidc`, the claims read by `identity.py`). The embedded default: a DEVELOPMENT page where one picks the
demo patient or types a SPID (or a representative's id and the SPID they act for); it answers 403
when EPR_ENV=production, whatever the request. Either way the person becomes the page's principal
only through `PortalExchange.sign_in` (MPI, 303, audit), under a new session id.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.auth.errors import AccessRefused
from gateway.pages.oidc import SignInFailed
from gateway.portal.identity import identity_of
from gateway.pages.i18n import N_
from gateway.portal.pages import portal, public, render, set_cookie, signed_in, with_language
from gateway.pages.sessions import COOKIE
from gateway.portal.sharing import FormProblem
from gateway.exchanges.portal import patient_principal, representative_principal
from gateway.http.routes.common import run_use_case
from adapters.cara.identifier_syntax import is_spid

log = logging.getLogger("epr.gateway.portal")


@public
async def home(request: Request) -> Response:
    session = request.state.page_session
    return RedirectResponse("/portal/documents" if session.signed_in else "/portal/sign-in", status_code=303)


@public
async def sign_in_page(request: Request) -> Response:
    return render(request, "sign_in.html", expired=request.query_params.get("expired") == "1",
                  oidc=portal(request).oidc is not None, demo_spid=portal(request).demo_spid, problem=None,
                  refusal=None, typed={})


@public
async def dev_sign_in(request: Request, form: dict[str, str]) -> Response:
    if not portal(request).dev_sign_in:
        return render(request, "error.html", 403, title_key="refused",
                      message_key=N_("The development sign-in is not available in production."))
    spid = (form.get("spid") or "").strip()
    representative = (form.get("representative") or "").strip()
    if not is_spid(spid):
        message = N_("An EPR-SPID has 18 digits.")
        return _refused(request, message, FormProblem(message, "spid"), form)
    if form.get("as") == "representative":
        if not representative:
            message = N_("Enter the representative's identifier.")
            return _refused(request, message, FormProblem(message, "representative"), form)
        principal = representative_principal(representative_id=representative, spid=spid,
                                             name=form.get("name") or representative)
    else:
        principal = patient_principal(spid=spid, name=form.get("name") or None)
    return await _complete(request, principal)


@public
async def oidc_login(request: Request) -> Response:
    client = portal(request).oidc
    if client is None:
        return render(request, "error.html", 404, title_key="not-found",
                      message_key=N_("No identity provider is configured."))
    # The callback on the public origin, never on the request's Host (EPR_PORTAL_OIDC_REDIRECT_URL wins).
    url, login = await client.start(f"{portal(request).public_origin}/portal/oidc/callback")
    session_id = request.state.page_session_id
    portal(request).sessions.update(session_id, _with_login(request.state.page_session, login))
    response = RedirectResponse(url, status_code=303)
    set_cookie(response, session_id, request)
    return response


@public
async def oidc_callback(request: Request) -> Response:
    client = portal(request).oidc
    session = request.state.page_session
    if client is None:
        return render(request, "error.html", 404, title_key="not-found",
                      message_key=N_("No identity provider is configured."))
    try:
        claims = await client.finish(login=session.login, state=request.query_params.get("state"),
                                     code=request.query_params.get("code"))
        identity = identity_of(claims, portal(request).settings)
    except SignInFailed as failure:
        log.info("portal sign-in refused: %s", failure)  # the reason only: never a code or a token
        return _refused(request, N_("The sign-in could not be completed. Please try again."))
    if identity.role == "REP":
        principal = representative_principal(representative_id=identity.user_id, spid=identity.patient_spid,
                                             name=identity.name or None)
    else:
        principal = patient_principal(spid=identity.patient_spid, name=identity.name or None)
    return await _complete(request, principal)


@signed_in
async def sign_out(request: Request, principal, form) -> Response:
    portal(request).sessions.end(request.state.page_session_id)
    response = RedirectResponse("/portal/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@public
async def language(request: Request, form: dict[str, str]) -> Response:
    session_id, session = request.state.page_session_id, request.state.page_session
    portal(request).sessions.update(session_id, with_language(session, form.get("lang", "")))
    back = form.get("back", "")
    target = back if back.startswith("/portal") and "//" not in back and "\\" not in back else "/portal"
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, session_id, request)
    return response


async def _complete(request: Request, principal) -> Response:
    try:
        signed_in = await run_use_case(request, portal(request).services.portal.sign_in, principal=principal)
    except AccessRefused:
        # One answer for an unknown patient and a representative without a 303: it reveals nothing.
        return _refused(request, N_("No record could be opened for this sign-in."))
    old_id = request.cookies.get(COOKIE)
    session_id, _ = portal(request).sessions.sign_in(
        old_id, role=principal.role, user_id=principal.user_id, patient_spid=principal.patient_spid,
        name=principal.name or "", patient_name=signed_in.patient_name or principal.patient_spid)
    response = RedirectResponse("/portal/documents", status_code=303)
    set_cookie(response, session_id, request)
    return response


def _refused(request: Request, message: str, at_field: FormProblem | None = None,
             form: dict[str, str] | None = None) -> Response:
    """The sign-in page again: a refusal of the sign-in itself at the top; a field typed wrong at that
    field, with what was typed kept (`templates/_forms.html`)."""
    typed = {k: v for k, v in (form or {}).items() if k in ("as", "spid", "representative", "name")}
    return render(request, "sign_in.html", 400 if at_field else 403, expired=False,
                  oidc=portal(request).oidc is not None, demo_spid=portal(request).demo_spid,
                  problem=at_field, problem_action="dev-sign-in" if at_field else "", refusal=None if at_field else message,
                  typed=typed)


def _with_login(session, login):
    return replace(session, login=login)

