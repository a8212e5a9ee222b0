"""What every page of the portal shares: its site (templates, sessions, the door, error pages).

`signed_in` is the portal's door (`gateway.pages.site.signed_in_page`, the rules every web page of the
gateway follows): it turns the session cookie into the patient's (or representative's) Principal, checks
the CSRF token of every POST, and marks the endpoint so the deny-by-default test can tell it is guarded.
Errors raised by the use-cases become pages with the same statuses FHIR clients get (404 for a document
that is missing or not this patient's, 403 refused, 400 bad input, 503 dependency down).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from consent.principal import Principal
from gateway.exchanges.portal import patient_principal, representative_principal
from gateway.pages.i18n import N_
from gateway.pages.sessions import COOKIE, PageSession, Sessions
from gateway.pages.site import ErrorTexts, Site, form_of, public_page, signed_in_page, with_language

__all__ = ["Portal", "PortalSession", "error_page", "form_of", "portal", "principal_of", "public", "render", "set_cookie",
           "signed_in", "with_language"]

TEMPLATES = Path(__file__).parent / "templates"
LOCALES = Path(__file__).parent / "locales"
ERRORS = ErrorTexts(
    not_found=N_("This document does not exist, or it is not part of your record."),
    refused=N_("This is not allowed with your current rights."),
    conflict=N_("Your record changed in the meantime. Nothing was changed; please look again and retry."),
    invalid=N_("The request could not be understood. Nothing was changed."),
    unavailable=N_("The service is briefly unavailable. Nothing was changed; please try again later."),
    error=N_("Something went wrong on our side. Nothing was changed."),
    back_path="/portal", back=N_("Back to my record"))


@dataclass(frozen=True)
class PortalSession(PageSession):
    """The patient's page: the patient (PAT) or a representative (REP) and the patient they act for."""

    user_id: str = ""  # SPID (PAT) or representative id (REP)
    patient_spid: str = ""
    patient_name: str = ""  # the patient represented, named in the header and headings (a representative)
    name: str = ""


class Portal(Site):
    """The portal's own state, kept on the app: the use-cases, sessions, the directory, the OIDC client,
    whether the development sign-in is offered (never in production) and the demo patient it proposes."""

    def __init__(self, *, services, sessions: Sessions, directory, oidc, dev_sign_in: bool, demo_spid: str,
                 public_origin: str, settings=None):
        super().__init__(name="portal", cookie=COOKIE, sessions=sessions, templates=TEMPLATES, locales=LOCALES,
                         services=services, public_origin=public_origin, dev_sign_in=dev_sign_in, errors=ERRORS)
        self.directory = directory
        self.oidc = oidc
        self.demo_spid = demo_spid
        self.settings = settings  # the identity provider's claim names (`identity.identity_of`)

    def principal_of(self, session: PageSession) -> Principal:
        return principal_of(session)


def portal(request: Request) -> Portal:
    return request.app.state.portal


def principal_of(session) -> Principal:
    if session.role == "REP":
        return representative_principal(representative_id=session.user_id, spid=session.patient_spid,
                                        name=session.name or None)
    return patient_principal(spid=session.patient_spid, name=session.name or None)


def set_cookie(response: Response, session_id: str, request: Request) -> None:
    portal(request).set_cookie(response, session_id)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return portal(request).render(request, template, status, **context)


def error_page(request: Request, error: Exception) -> HTMLResponse:
    return portal(request).error_page(request, error)


signed_in = signed_in_page(portal)
public = public_page(portal)
