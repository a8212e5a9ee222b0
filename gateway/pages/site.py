"""The rules every web page of the gateway follows, written once: templates and catalogues, the session
cookie, the CSRF and Origin checks of every form, the door in front of signed-in pages, error pages.

A page (the patient's `/portal`, the professional's `/hcp`) is a `Site`: its prefix, its cookie and
sessions, its templates and catalogues (over the shared layout), its texts for the error pages, and how
a signed-in session becomes the Principal the use-cases are called with. Its routes are decorated with
`public_page` (sign-in, language: they still get a session, so their forms carry a CSRF token) or
`signed_in_page` (everything else): the deny-by-default test finds every route that is neither. Both
pages sign in the same way, at the same paths under their prefix (`sign_in_routes`, `public_paths`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from adapters.cara.errors import NotFound, RecordError
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.exchanges.audit_commit import AuditUnavailable
from gateway.http.outcomes import STATUS_BY_ERROR
from gateway.pages import csrf, i18n
from gateway.pages.i18n import N_
from gateway.pages.sessions import PageSession, Sessions

log = logging.getLogger("epr.gateway.pages")
SHARED_TEMPLATES = Path(__file__).parent / "templates"
FORM_REFUSED = N_("This form has expired or did not come from this page. Please try again.")


@dataclass(frozen=True)
class ErrorTexts:
    """What a page says for each kind of failure (catalogue messages of that page), and where its error
    page leads back to (the shared templates/error.html)."""

    not_found: str
    refused: str
    conflict: str
    invalid: str
    unavailable: str
    error: str
    back_path: str
    back: str


class Site:
    """One web page of the gateway, kept on the app's state (`app.state.<name>`)."""

    def __init__(self, *, name: str, cookie: str, sessions: Sessions, templates: Path, locales: Path, services,
                 public_origin: str, dev_sign_in: bool, errors: ErrorTexts):
        self.name = name
        self.prefix = f"/{name}"
        self.cookie = cookie
        self.sessions = sessions
        self.locales = locales
        self.services = services
        self.public_origin = public_origin  # of redirects, the OIDC callback and the Origin check (never Host)
        self.dev_sign_in = dev_sign_in
        self.errors = errors
        # Refused forms are counted per address with the FHIR face's refused authentications.
        self.form_refusal = f"{name} form refused: no CSRF token of this session, or sent from another origin"
        self.environment = Environment(loader=FileSystemLoader([str(templates), str(SHARED_TEMPLATES)]),
                                       autoescape=select_autoescape(["html"]), extensions=["jinja2.ext.i18n"],
                                       trim_blocks=True, lstrip_blocks=True)
        self.environment.filters["isodate"] = date.fromisoformat  # a FHIR date (YYYY-MM-DD) for `date(…)`

    def principal_of(self, session: PageSession) -> Principal:
        """The signed-in person as the use-cases know them (each page says how)."""
        raise NotImplementedError

    # -- answers --------------------------------------------------------------------------------
    def language_of(self, request: Request) -> str:
        """The page's language: the session's choice, else the browser's, else French."""
        session: PageSession | None = getattr(request.state, "page_session", None)
        return i18n.choose(session.lang if session else None, request.headers.get("accept-language"))

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        session: PageSession | None = getattr(request.state, "page_session", None)
        lang = self.language_of(request)
        translations = i18n.translations(lang, self.locales)

        def gettext(message: str, **values: Any) -> str:
            text = translations.gettext(message)
            return text % values if values else text

        def csrf_field() -> Markup:
            token = session.csrf if session else ""
            return Markup('<input type="hidden" name="%s" value="%s">') % (csrf.FIELD, token)

        body = self.environment.get_template(template).render(
            _=gettext, gettext=gettext, ngettext=translations.ngettext, lang=lang, languages=i18n.NAMES,
            session=session, csrf_field=csrf_field, date=lambda v: i18n.format_date(v, lang),
            datetime=lambda v: i18n.format_datetime(v, lang), path=request.url.path, site=self,
            dev_sign_in=self.dev_sign_in, **context)
        return HTMLResponse(body, status_code=status)

    def error_page(self, request: Request, error: Exception) -> HTMLResponse:
        """The use-cases' errors as pages, with the statuses FHIR clients get for them (`outcomes`)."""
        if isinstance(error, NotFound):
            return self.render(request, "error.html", 404, title_key="not-found", message_key=self.errors.not_found)
        if isinstance(error, AccessRefused):
            return self.render(request, "error.html", 403, title_key="refused", message_key=self.errors.refused)
        if isinstance(error, RecordError):
            status = next((s for kind, s in STATUS_BY_ERROR.items() if isinstance(error, kind)), 500)
            if status == 503:
                log.error("%s: dependency unavailable: %s", self.name, type(error).__name__)
                return self.render(request, "error.html", 503, title_key="unavailable",
                                   message_key=self.errors.unavailable)
            if status == 409:
                return self.render(request, "error.html", 409, title_key="invalid", message_key=self.errors.conflict)
            if status < 500:
                return self.render(request, "error.html", status, title_key="invalid",
                                   message_key=self.errors.invalid)
        log.exception("%s: unexpected error", self.name)  # the type and trace only: no patient data in messages
        return self.render(request, "error.html", 500, title_key="error", message_key=self.errors.error)

    # -- the session cookie and forms ----------------------------------------------------------
    def session_of(self, request: Request) -> tuple[str | None, PageSession | None]:
        session_id = request.cookies.get(self.cookie)
        return session_id, self.sessions.current(session_id)

    def set_cookie(self, response: Response, session_id: str) -> None:
        response.set_cookie(self.cookie, session_id, httponly=True, secure=True, samesite="strict", path="/",
                            max_age=self.sessions.absolute_seconds)

    def end_session(self, request: Request, response: Response) -> None:
        self.sessions.end(request.state.page_session_id)
        response.delete_cookie(self.cookie, path="/", secure=True, httponly=True, samesite="strict")

    async def checked_form(self, request: Request, session: PageSession) -> dict[str, str] | None:
        """The form of a POST if its CSRF token is the session's and its Origin ours, else None."""
        form = await form_of(request)
        if not csrf.valid(session.csrf, form.get(csrf.FIELD)):
            return None
        if not csrf.same_origin(request.headers.get("origin"), self.public_origin):
            return None
        return form

    async def refused_form(self, request: Request, principal: Principal | None = None) -> HTMLResponse:
        """403 page for a form without this session's token or from another origin — accounted like a
        refused authentication (the first of a window per client address recorded at once, the rest
        counted into one summary record: a flood of forged posts cannot flood the ledger)."""
        address = request.client.host if request.client else None
        # The FHIR face's per-address windows (the pages are served by the same app: pages → http is allowed).
        if request.app.state.http.refusals.refused(address, self.form_refusal):
            refusal = AccessRefused(f"{request.method} {request.url.path}: {self.form_refusal}")
            try:
                await run_in_threadpool(self.services.auditor.failure, f"{self.name}-form", principal, refusal)
            except AuditUnavailable as unavailable:  # a refusal that cannot be audited: 503, as on the FHIR face
                return self.error_page(request, unavailable)
        return self.render(request, "error.html", 403, title_key="refused", message_key=FORM_REFUSED)


async def form_of(request: Request) -> dict[str, str]:
    """The form's text fields; its files (a multipart upload) are kept on `request.state.page_files`."""
    form = await request.form()
    request.state.page_files = {k: v for k, v in form.items() if isinstance(v, UploadFile)}
    return {k: v for k, v in form.items() if isinstance(v, str)}


def with_language(session: PageSession, lang: str) -> PageSession:
    return replace(session, lang=lang if lang in i18n.LANGUAGES else "")


Endpoint = Callable[..., Awaitable[Response]]


def signed_in_page(site_of: Callable[[Request], Site]) -> Callable[[Endpoint], Callable[[Request], Awaitable[Response]]]:
    """The door of a page's signed-in routes, as `gateway.http.security.require_principal` is the FHIR one:
    the session cookie becomes the page's Principal, every POST's CSRF token and Origin are checked, and
    every failure is a page, never a stack trace. `endpoint(request, principal)` for GET,
    `endpoint(request, principal, form)` for POST. The route is marked so the deny-by-default test can
    tell it is guarded."""
    def decorate(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            site = site_of(request)
            session_id, session = site.session_of(request)
            if session is None or not session.signed_in:
                # A cookie whose session is gone timed out (or was signed out): say so on the sign-in page.
                expired = session is None and request.cookies.get(site.cookie)
                return RedirectResponse(f"{site.prefix}/sign-in?expired=1" if expired else f"{site.prefix}/sign-in",
                                        status_code=303)
            request.state.page_session = session
            request.state.page_session_id = session_id
            form = None
            if request.method == "POST":
                form = await site.checked_form(request, session)
                if form is None:
                    return await site.refused_form(request, site.principal_of(session))
            try:
                principal = site.principal_of(session)
                request.state.principal = principal
                return await endpoint(request, principal, form) if request.method == "POST" else \
                    await endpoint(request, principal)
            except Exception as error:  # every failure is a page, never a stack trace
                return site.error_page(request, error)

        guarded.requires_page_session = True  # type: ignore[attr-defined]
        return guarded
    return decorate


def public_page(site_of: Callable[[Request], Site]) -> Callable[[Endpoint], Callable[[Request], Awaitable[Response]]]:
    """A page before sign-in (sign-in, language): it still gets a session, so its forms carry a CSRF
    token like every other. `endpoint(request)` for GET, `endpoint(request, form)` for POST."""
    def decorate(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def page(request: Request) -> Response:
            site = site_of(request)
            session_id, session = site.session_of(request)
            fresh = session is None
            if fresh:
                session_id, session = site.sessions.start()
            request.state.page_session = session
            request.state.page_session_id = session_id
            form = None
            if request.method == "POST":
                form = await site.checked_form(request, session)
                if form is None:
                    response = await site.refused_form(request)
                    if fresh:
                        site.set_cookie(response, session_id)
                    return response
            try:
                response = await endpoint(request, form) if request.method == "POST" else await endpoint(request)
            except Exception as error:
                response = site.error_page(request, error)
            if fresh and site.cookie.encode() not in b"".join(v for k, v in response.raw_headers if k == b"set-cookie"):
                site.set_cookie(response, session_id)
            return response
        return page
    return decorate


# -- the sign-in every page shares -------------------------------------------------------------------
_BEFORE_SIGN_IN = ("", "/sign-in", "/dev-sign-in", "/oidc/login", "/oidc/callback", "/language")


def public_paths(prefix: str) -> frozenset[str]:
    """The paths of a page reachable before sign-in: its sign-in routes but sign-out. Everything else
    under `prefix` is behind `signed_in_page`."""
    return frozenset(prefix + path for path in _BEFORE_SIGN_IN)


def sign_in_routes(prefix: str, signin) -> list[Route]:
    """A page's home, sign-in page, development sign-in, OpenID Connect login and callback (named
    `<page>_oidc_callback`: the redirect URI is built from it), language and sign-out, at the same paths
    under each page's prefix, served by the page's own `routes_signin` module (`signin`)."""
    return [
        Route(prefix, signin.home, methods=["GET"]),
        Route(f"{prefix}/sign-in", signin.sign_in_page, methods=["GET"]),
        Route(f"{prefix}/dev-sign-in", signin.dev_sign_in, methods=["POST"]),
        Route(f"{prefix}/oidc/login", signin.oidc_login, methods=["GET"]),
        Route(f"{prefix}/oidc/callback", signin.oidc_callback, methods=["GET"],
              name=f"{prefix.strip('/')}_oidc_callback"),
        Route(f"{prefix}/language", signin.language, methods=["POST"]),
        Route(f"{prefix}/sign-out", signin.sign_out, methods=["POST"]),
    ]
