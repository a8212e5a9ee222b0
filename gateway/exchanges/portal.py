"""The use-cases only the patient's web page needs: signing in, the emergency accesses it tells the
patient about, and marking them seen.

Everything else the page shows or changes goes through the use-cases FHIR clients use (`exchange`,
`policies`, `trail`, `metadata`); these are part of the same layer: they take the principal, ask the
decision point and write the audit record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.cara.store.patients import DatabasePatientIndex
from consent.principal import Principal
from consent.roles import PATIENT_SIDE
from gateway.exchanges.access import AccessControl
from gateway.exchanges.auditing import Auditor, audited
from gateway.auth.errors import AccessRefused

PORTAL_CLIENT = "epr-portal"


@dataclass(frozen=True)
class SignedIn:
    principal: Principal
    patient_name: str | None  # the patient's name as the MPI has it (named beside a representative)


@dataclass(frozen=True)
class EmergencyNotice:
    """One emergency access the patient is told of: who (as their token named them), what they did
    (search, retrieve, read metadata), which documents (entry id and type code), when, and whether the
    page has shown it before."""

    id: str
    at: datetime
    by_name: str
    by_id: str  # the professional's GLN (an assistant's own)
    by_role: str
    organisation: str | None
    acting_for: str | None
    what: str
    documents: tuple[tuple[str, str | None, str], ...]  # (entry id, type system, type code)
    unique_ids: int  # how many documents were named (notices written before entries were kept: ids only)
    seen: bool


class PortalExchange:
    def __init__(self, *, patients: DatabasePatientIndex, access: AccessControl, auditor: Auditor):
        self._patients = patients
        self._access = access
        self.auditor = auditor

    @audited("portal-sign-in")
    def sign_in(self, *, principal: Principal) -> SignedIn:
        """A patient or representative, as the identity provider (or the development page) named them,
        becomes the page's principal only if the MPI knows the patient and, for a representative, a
        303 naming them is in force. Refused: AccessRefused (the same answer for both reasons)."""
        if principal.role not in PATIENT_SIDE or not principal.patient_spid:
            raise AccessRefused("the patient's page is for patients and their representatives")
        pid = self._patients.pid_for_spid(principal.patient_spid)
        if pid is None:
            raise AccessRefused("no electronic patient record is open for this person in this community")
        self._access.require(principal, spid=principal.patient_spid, pid=pid, action="read-audit")
        self.auditor.write_now([self.auditor.record("portal-sign-in", principal, patient_spid=principal.patient_spid)])
        return SignedIn(principal, _display_name(self._patients.get(pid)))

    def seen_notifications(self, *, principal: Principal, spid: str) -> set[str]:
        pid = self._pid(principal, spid)
        return self._access.notifications.seen(pid)

    @audited("notifications")
    def emergency_notices(self, *, principal: Principal, spid: str) -> list[EmergencyNotice]:
        """The patient's emergency-access notifications, newest first, each marked seen or not: what
        the page's landing notice and the trail show (read like the FHIR Communication search is)."""
        pid = self._pid(principal, spid)
        self.auditor.write_now([self.auditor.record("notifications", principal, patient_spid=spid)])
        seen = self._access.notifications.seen(pid)
        return [_notice(notification_id, created, notice, notification_id in seen)
                for notification_id, created, notice in self._access.notifications.for_patient(pid)
                if notice.get("kind") == "emergency-access"]

    @audited("notifications")
    def mark_notifications_seen(self, *, principal: Principal, spid: str, notification_ids: list[str]) -> int:
        """The page showed these notifications to the patient (or representative): mark them read."""
        pid = self._pid(principal, spid)
        marked = self._access.notifications.mark_seen(pid=pid, notification_ids=notification_ids)
        if marked:
            self.auditor.write_now([self.auditor.record("notifications", principal, action="U", patient_spid=spid)])
        return marked

    def _pid(self, principal: Principal, spid: str) -> str:
        self._access.require_patient_context(principal, spid)
        pid = self._patients.pid_for_spid(spid)
        if pid is None:
            raise AccessRefused("notifications are read by the patient or their representative only")
        self._access.require(principal, spid=spid, pid=pid, action="read-audit")
        return pid


def _notice(notification_id: str, created: datetime, notice: dict[str, Any], seen: bool) -> EmergencyNotice:
    by = notice.get("by") or {}
    documents = tuple((e["id"], *(e.get("type") or [None, ""])) for e in notice.get("entries", []))
    return EmergencyNotice(id=notification_id, at=created.replace(tzinfo=UTC), by_name=by.get("name") or by.get("id", ""),
                           by_id=by.get("id", ""), by_role=by.get("role", ""), organisation=by.get("organisation"),
                           acting_for=by.get("acting_for"), what=notice.get("what", ""), documents=documents,
                           unique_ids=len(notice.get("documents", [])), seen=seen)


def _display_name(record) -> str | None:
    if record is None or not (record.family or record.given):
        return None
    return " ".join([*record.given, record.family or ""]).strip()


def patient_principal(*, spid: str, name: str | None) -> Principal:
    return Principal(role="PAT", user_id=spid, user_id_qualifier="urn:e-health-suisse:2015:epr-spid", name=name,
                     patient_spid=spid, client_id=PORTAL_CLIENT)


def representative_principal(*, representative_id: str, spid: str, name: str | None) -> Principal:
    return Principal(role="REP", user_id=representative_id, user_id_qualifier="urn:e-health-suisse:representative-id",
                     name=name, patient_spid=spid, client_id=PORTAL_CLIENT)
