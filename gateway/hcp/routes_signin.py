"""Signing in and out, and the language switcher.

Production: OpenID Connect against the professionals' identity provider (`gateway.pages.oidc`; the
claims, the two-factor proof and an assistant's delegation read by `identity.py`). The embedded default:
a DEVELOPMENT page where one picks a demo professional or types a GLN (or an assistant's GLN and the
professional they work for); it answers 403 when EPR_ENV=production, whatever the request. Either way the
person becomes the page's principal only through `professional_principal` (the FHIR door's checks) and
`ProfessionalExchange.sign_in` (audited), under a new session id.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from consent.roles import ASSISTANT, PROFESSIONAL
from gateway.auth.errors import AccessRefused, AuthenticationFailed
from gateway.exchanges.professionals import Professional, professional_principal
from gateway.hcp.identity import professional_of
from gateway.hcp.site import DEV_ISSUER, hcp, public, session_values, signed_in
from gateway.http.routes.common import run_use_case
from gateway.pages.i18n import N_
from gateway.pages.oidc import SignInFailed
from gateway.pages.site import with_language

log = logging.getLogger("epr.gateway.hcp")
PATIENTS = "/hcp/patients"


@public
async def home(request: Request) -> Response:
    session = request.state.page_session
    return RedirectResponse(PATIENTS if session.signed_in else "/hcp/sign-in", status_code=303)


@public
async def sign_in_page(request: Request) -> Response:
    return _sign_in(request, 200, problem=None)


@public
async def dev_sign_in(request: Request, form: dict[str, str]) -> Response:
    site = hcp(request)
    if not site.dev_sign_in:
        return site.render(request, "error.html", 403, title_key="refused",
                           message_key=N_("The development sign-in is not available in production."))
    chosen = next((p for p in site.directory if p[0] == form.get("demo")), None)
    gln, name = (chosen[0], chosen[1]) if chosen else ((form.get("gln") or "").strip(), (form.get("name") or "").strip())
    acting_for = (form.get("acting_for") or "").strip()
    if form.get("as") == "assistant" and not acting_for:
        return _sign_in(request, 403, problem=N_("An assistant signs in for the professional they work for: "
                                                 "enter that professional's GLN."))
    person = Professional(role=ASSISTANT if form.get("as") == "assistant" else PROFESSIONAL, gln=gln,
                          name=name or None, acting_for=acting_for or None,
                          acting_for_name=(form.get("acting_for_name") or "").strip() or None,
                          organisation=chosen[2] if chosen and chosen[2] else None)
    return await _complete(request, person, issuer=DEV_ISSUER,
                           local_id_system=(form.get("local_id_system") or "").strip())


@public
async def oidc_login(request: Request) -> Response:
    site = hcp(request)
    if site.oidc is None:
        return _no_provider(request)
    # The callback on the public origin, never on the request's Host (EPR_HCP_OIDC_REDIRECT_URL wins).
    url, login = await site.oidc.start(f"{site.public_origin}/hcp/oidc/callback")
    site.update_session(request, login=login)
    response = RedirectResponse(url, status_code=303)
    site.set_cookie(response, request.state.page_session_id)
    return response


@public
async def oidc_callback(request: Request) -> Response:
    site = hcp(request)
    if site.oidc is None:
        return _no_provider(request)
    try:
        claims = await site.oidc.finish(login=request.state.page_session.login, state=request.query_params.get("state"),
                                        code=request.query_params.get("code"))
        person, local_id_system = professional_of(claims, site.claims)
    except SignInFailed as failure:
        log.info("hcp sign-in refused: %s", failure)  # the reason only: never a code or a token
        return _sign_in(request, 403, problem=N_("The sign-in could not be completed: it needs a two-factor "
                                                 "sign-in naming your GLN (and, for an assistant, the "
                                                 "professional you work for)."))
    return await _complete(request, person, issuer=site.oidc.issuer, local_id_system=local_id_system)


@signed_in
async def sign_out(request: Request, principal, form) -> Response:
    response = RedirectResponse("/hcp/sign-in", status_code=303)
    hcp(request).end_session(request, response)
    return response


@public
async def language(request: Request, form: dict[str, str]) -> Response:
    site = hcp(request)
    session_id, session = request.state.page_session_id, request.state.page_session
    site.sessions.update(session_id, with_language(session, form.get("lang", "")))
    back = form.get("back", "")
    target = back if back.startswith("/hcp") and "//" not in back and "\\" not in back else "/hcp"
    response = RedirectResponse(target, status_code=303)
    site.set_cookie(response, session_id)
    return response


async def _complete(request: Request, person: Professional, *, issuer: str, local_id_system: str) -> Response:
    site = hcp(request)
    try:
        principal = professional_principal(person, issuer=issuer)
        await run_use_case(request, site.services.professionals.sign_in, principal=principal)
    except (AuthenticationFailed, AccessRefused) as refusal:
        log.info("hcp sign-in refused: %s", refusal)
        return _sign_in(request, 403, problem=N_("This sign-in was refused: the GLN (13 digits with a valid check "
                                                 "digit) and, for an assistant, the professional's GLN are needed."))
    session_id, _ = site.sessions.sign_in(request.cookies.get(site.cookie),
                                          **session_values(person, issuer=issuer, local_id_system=local_id_system))
    response = RedirectResponse(PATIENTS, status_code=303)
    site.set_cookie(response, session_id)
    return response


def _no_provider(request: Request) -> Response:
    return hcp(request).render(request, "error.html", 404, title_key="not-found",
                               message_key=N_("No identity provider is configured."))


def _sign_in(request: Request, status: int, *, problem: str | None) -> Response:
    site = hcp(request)
    return site.render(request, "sign_in.html", status, expired=request.query_params.get("expired") == "1",
                       oidc=site.oidc is not None, demo=site.directory, problem=problem)
