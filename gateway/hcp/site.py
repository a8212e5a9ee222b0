"""What every page of the professionals' site shares: its session (who signed in, an emergency in
force), its Site (templates, catalogues, texts of the error pages) and its door.

The session keeps the person as the identity provider named them; each request turns it into the
Principal through the use-case layer (`professional_principal`), normally with purpose NORM. An emergency
access is kept for one patient and a limited time (`EPR_HCP_EMERGENCY_MINUTES`): while it lasts, the
requests about that patient act with purpose EMER and the reason given, bound to that patient only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from starlette.requests import Request

from consent.principal import Group, Principal
from gateway.exchanges.professionals import Professional, professional_principal
from gateway.pages.i18n import N_
from gateway.pages.sessions import PageSession, Sessions
from gateway.pages.site import ErrorTexts, Site, public_page, signed_in_page

COOKIE = "__Host-epr-hcp"  # its own cookie: a patient's session is never one this page reads
TEMPLATES = Path(__file__).parent / "templates"
LOCALES = Path(__file__).parent / "locales"
DEV_ISSUER = "epr-hcp-development-sign-in"  # the issuer of a development sign-in's principal
ERRORS = ErrorTexts(
    not_found=N_("This patient or document is not known, or it is not visible to you."),
    refused=N_("This is not allowed with your current rights."),
    conflict=N_("The record changed in the meantime. Nothing was changed; please look again and retry."),
    invalid=N_("The request could not be understood. Nothing was changed."),
    unavailable=N_("The service is briefly unavailable. Nothing was changed; please try again later."),
    error=N_("Something went wrong on our side. Nothing was changed."),
    back_path="/hcp/patients", back=N_("Back to finding a patient"))


@dataclass(frozen=True)
class HcpSession(PageSession):
    """`role` HCP or ASS once signed in; the person as the identity provider named them."""

    gln: str = ""
    name: str = ""
    acting_for: str = ""
    acting_for_name: str = ""
    organisation: str = ""
    organisation_id: str = ""
    groups: list = field(default_factory=list)  # [[id, name], …]
    local_id_system: str = ""  # urn:oid:… of the institution's patient ids (finding by a local id)
    issuer: str = ""
    emergency: dict = field(default_factory=dict)  # {"pid", "spid", "reason", "until"} while one lasts


class Hcp(Site):
    """The professionals' page's state on the app (`app.state.hcp`)."""

    def __init__(self, *, services, sessions: Sessions, oidc, claims, dev_sign_in: bool, public_origin: str,
                 emergency_minutes: int, directory, max_upload_bytes: int, demo_local_system: str = ""):
        super().__init__(name="hcp", cookie=COOKIE, sessions=sessions, templates=TEMPLATES, locales=LOCALES,
                         services=services, public_origin=public_origin, dev_sign_in=dev_sign_in, errors=ERRORS)
        self.oidc = oidc
        self.claims = claims  # how the identity provider's claims are read (`identity.ClaimNames`)
        self.emergency_minutes = emergency_minutes
        self.directory = directory  # the demo professionals the development sign-in offers
        self.demo_local_system = demo_local_system  # their institution's patient ids (development sign-in)
        self.max_upload_bytes = max_upload_bytes

    def principal_of(self, session: PageSession) -> Principal:
        return professional_principal(person_of(session), issuer=session.issuer)

    def emergency_of(self, session: HcpSession, pid: str) -> dict | None:
        """The emergency in force for this patient, or None (ended, expired, or for another patient)."""
        emergency = session.emergency
        if emergency and emergency.get("pid") == pid and self.sessions.clock() < emergency.get("until", 0):
            return emergency
        return None

    def acting_on(self, request: Request, pid: str) -> Principal:
        """The principal for a request about patient `pid`: EMER with its reason while an emergency for
        that patient lasts, else the signed-in person's normal one."""
        session: HcpSession = request.state.page_session
        emergency = self.emergency_of(session, pid)
        if emergency is None:
            return request.state.principal
        return professional_principal(person_of(session), issuer=session.issuer, emergency_reason=emergency["reason"],
                                      patient_spid=emergency["spid"])

    def start_emergency(self, request: Request, *, pid: str, spid: str, reason: str) -> None:
        until = self.sessions.clock() + self.emergency_minutes * 60
        self.update_session(request, emergency={"pid": pid, "spid": spid, "reason": reason, "until": until})

    def end_emergency(self, request: Request) -> None:
        self.update_session(request, emergency={})

    def update_session(self, request: Request, **values) -> None:
        session = replace(request.state.page_session, **values)
        self.sessions.update(request.state.page_session_id, session)
        request.state.page_session = session


def person_of(session: HcpSession) -> Professional:
    return Professional(role=session.role, gln=session.gln, name=session.name or None,
                        acting_for=session.acting_for or None, acting_for_name=session.acting_for_name or None,
                        organisation=session.organisation or None, organisation_id=session.organisation_id or None,
                        groups=tuple(Group(g[0], g[1] or None) for g in session.groups))


def session_values(person: Professional, *, issuer: str, local_id_system: str = "") -> dict:
    """What a sign-in keeps in the new session (JSON-able: sessions may live in Redis)."""
    return {"role": person.role, "gln": person.gln, "name": person.name or "", "acting_for": person.acting_for or "",
            "acting_for_name": person.acting_for_name or "", "organisation": person.organisation or "",
            "organisation_id": person.organisation_id or "", "groups": [[g.id, g.name or ""] for g in person.groups],
            "local_id_system": local_id_system, "issuer": issuer}


def hcp(request: Request) -> Hcp:
    return request.app.state.hcp


signed_in = signed_in_page(hcp)
public = public_page(hcp)
