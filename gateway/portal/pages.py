"""What every page of the portal shares: templates, the session, the guard, error pages.

`signed_in` is the portal's door, as `gateway.http.security.require_principal` is the FHIR one: it turns
the session cookie into the patient's (or representative's) Principal, checks the CSRF token of
every POST, and marks the endpoint so the deny-by-default test can tell it is guarded. Errors raised
by the use-cases become pages with the same statuses FHIR clients get (404 for a document that is
missing or not this patient's, 403 refused, 400 bad input, 503 dependency down).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from adapters.cara.errors import NotFound, RecordError
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.http.outcomes import STATUS_BY_ERROR
from gateway.pages import csrf, i18n
from gateway.pages.i18n import N_
from gateway.pages.sessions import COOKIE, PortalSession, Sessions
from gateway.exchanges.audit_commit import AuditUnavailable
from gateway.exchanges.portal import patient_principal, representative_principal

log = logging.getLogger("epr.gateway.portal")
TEMPLATES = Path(__file__).parent / "templates"
SHARED_TEMPLATES = Path(__file__).parent.parent / "pages" / "templates"
environment = Environment(loader=FileSystemLoader([str(TEMPLATES), str(SHARED_TEMPLATES)]), autoescape=select_autoescape(["html"]),
                          extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)


class Portal:
    """The portal's own state, kept on the app: the use-cases, sessions, the directory, the OIDC client,
    whether the development sign-in is offered (never in production) and the demo patient it proposes."""

    def __init__(self, *, services, sessions: Sessions, directory, oidc, dev_sign_in: bool, demo_spid: str,
                 public_origin: str):
        self.services = services
        self.public_origin = public_origin  # of redirects, the OIDC callback and the Origin check (never Host)
        self.sessions = sessions
        self.directory = directory
        self.oidc = oidc
        self.dev_sign_in = dev_sign_in
        self.demo_spid = demo_spid


def portal(request: Request) -> Portal:
    return request.app.state.portal


def session_of(request: Request) -> tuple[str | None, PortalSession | None]:
    session_id = request.cookies.get(COOKIE)
    return session_id, portal(request).sessions.current(session_id)


def principal_of(session: PortalSession) -> Principal:
    if session.role == "REP":
        return representative_principal(representative_id=session.user_id, spid=session.patient_spid,
                                        name=session.name or None)
    return patient_principal(spid=session.patient_spid, name=session.name or None)


def set_cookie(response: Response, session_id: str, request: Request) -> None:
    response.set_cookie(COOKIE, session_id, httponly=True, secure=True, samesite="strict", path="/",
                        max_age=portal(request).sessions.absolute_seconds)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session: PortalSession | None = getattr(request.state, "portal_session", None)
    lang = i18n.choose(session.lang if session else None, request.headers.get("accept-language"))
    translations = i18n.translations(lang)

    def gettext(message: str, **values: Any) -> str:
        text = translations.gettext(message)
        return text % values if values else text

    def csrf_field() -> Markup:
        token = session.csrf if session else ""
        return Markup('<input type="hidden" name="%s" value="%s">') % (csrf.FIELD, token)

    body = environment.get_template(template).render(
        _=gettext, gettext=gettext, ngettext=translations.ngettext, lang=lang, languages=i18n.NAMES,
        session=session, csrf_field=csrf_field, date=lambda v: i18n.format_date(v, lang),
        datetime=lambda v: i18n.format_datetime(v, lang), path=request.url.path,
        dev_sign_in=portal(request).dev_sign_in, **context)
    return HTMLResponse(body, status_code=status)


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


CSRF_REFUSAL = "portal form refused: no CSRF token of this session, or sent from another origin"


async def _csrf_refused(request: Request, principal: Principal | None = None) -> HTMLResponse:
    """403 page for a form without this session's token or from another origin — accounted like a
    refused authentication (the first of a window per client address recorded at once, the rest
    counted into one summary record: a flood of forged posts cannot flood the ledger)."""
    services = portal(request).services
    address = request.client.host if request.client else None
    # The FHIR face's per-address windows (the portal is served by the same app: portal → http is allowed).
    if request.app.state.http.refusals.refused(address, CSRF_REFUSAL):
        refusal = AccessRefused(f"{request.method} {request.url.path}: {CSRF_REFUSAL}")
        try:
            await run_in_threadpool(services.auditor.failure, "portal-form", principal, refusal)
        except AuditUnavailable as unavailable:  # a refusal that cannot be audited: 503, as on the FHIR face
            return error_page(request, unavailable)
    return render(request, "error.html", 403, title_key="refused",
                  message_key=N_("This form has expired or did not come from this page. Please try again."))


async def checked_form(request: Request, session: PortalSession) -> dict[str, str] | None:
    """The form of a POST if its CSRF token is the session's and its Origin ours, else None."""
    form = await form_of(request)
    if not csrf.valid(session.csrf, form.get(csrf.FIELD)):
        return None
    if not csrf.same_origin(request.headers.get("origin"), portal(request).public_origin):
        return None
    return form


def signed_in(endpoint: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """The portal's door: signed-in session → Principal, CSRF on POST, errors → pages."""
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        session_id, session = session_of(request)
        if session is None or not session.signed_in:
            # A cookie whose session is gone timed out (or was signed out): say so on the sign-in page.
            expired = session is None and request.cookies.get(COOKIE)
            return RedirectResponse("/portal/sign-in?expired=1" if expired else "/portal/sign-in", status_code=303)
        request.state.portal_session = session
        request.state.portal_session_id = session_id
        form = None
        if request.method == "POST":
            form = await checked_form(request, session)
            if form is None:
                return await _csrf_refused(request, principal_of(session))
        principal = principal_of(session)
        request.state.principal = principal
        try:
            return await endpoint(request, principal, form) if request.method == "POST" else \
                await endpoint(request, principal)
        except Exception as error:  # every failure is a page, never a stack trace
            return error_page(request, error)

    guarded.requires_portal_session = True  # type: ignore[attr-defined]
    return guarded


def public(endpoint: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A page before sign-in (sign-in, language): it still gets a session, so its forms carry a
    CSRF token like every other."""
    @functools.wraps(endpoint)
    async def page(request: Request) -> Response:
        session_id, session = session_of(request)
        fresh = session is None
        if fresh:
            session_id, session = portal(request).sessions.start()
        request.state.portal_session = session
        request.state.portal_session_id = session_id
        form = None
        if request.method == "POST":
            form = await checked_form(request, session)
            if form is None:
                response = await _csrf_refused(request)
                if fresh:
                    set_cookie(response, session_id, request)
                return response
        try:
            response = await endpoint(request, form) if request.method == "POST" else await endpoint(request)
        except Exception as error:
            response = error_page(request, error)
        if fresh and COOKIE.encode() not in b"".join(v for k, v in response.raw_headers if k == b"set-cookie"):
            set_cookie(response, session_id, request)
        return response

    return page


def error_page(request: Request, error: Exception) -> HTMLResponse:
    """The use-cases' errors as pages, with the statuses FHIR clients get for them (`outcomes`)."""
    if isinstance(error, NotFound):
        return render(request, "error.html", 404, title_key="not-found",
                      message_key=N_("This document does not exist, or it is not part of your record."))
    if isinstance(error, AccessRefused):
        return render(request, "error.html", 403, title_key="refused",
                      message_key=N_("This is not allowed with your current rights."))
    if isinstance(error, RecordError):
        status = next((s for kind, s in STATUS_BY_ERROR.items() if isinstance(error, kind)), 500)
        if status == 503:
            log.error("portal: dependency unavailable: %s", type(error).__name__)
            return render(request, "error.html", 503, title_key="unavailable", message_key=N_(
                "The service is briefly unavailable. Nothing was changed; please try again later."))
        if status == 409:
            return render(request, "error.html", 409, title_key="invalid", message_key=N_(
                "Your record changed in the meantime. Nothing was changed; please look again and retry."))
        if status < 500:
            return render(request, "error.html", status, title_key="invalid",
                          message_key=N_("The request could not be understood. Nothing was changed."))
    log.exception("portal: unexpected error")  # the type and trace only: no patient data in messages
    return render(request, "error.html", 500, title_key="error",
                  message_key=N_("Something went wrong on our side. Nothing was changed."))


def with_language(session: PortalSession, lang: str) -> PortalSession:
    return replace(session, lang=lang if lang in i18n.LANGUAGES else "")
