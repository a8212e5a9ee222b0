"""The use-cases only the patient's web page needs: signing in and marking notifications seen.

Everything else the page shows or changes goes through the use-cases FHIR clients use (`exchange`,
`policies`, `trail`, `metadata`); these two are part of the same layer: they
take the principal, ask the decision point and write the audit record.
"""

from __future__ import annotations

from adapters.cara.store.patients import DatabasePatientIndex
from consent.principal import Principal
from consent.roles import PATIENT_SIDE
from gateway.exchanges.access import AccessControl
from gateway.exchanges.auditing import Auditor, audited
from gateway.auth.errors import AccessRefused

PORTAL_CLIENT = "epr-portal"


class PortalExchange:
    def __init__(self, *, patients: DatabasePatientIndex, access: AccessControl, auditor: Auditor):
        self._patients = patients
        self._access = access
        self.auditor = auditor

    @audited("portal-sign-in")
    def sign_in(self, *, principal: Principal) -> Principal:
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
        return principal

    def seen_notifications(self, *, principal: Principal, spid: str) -> set[str]:
        pid = self._pid(principal, spid)
        return self._access.notifications.seen(pid)

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


def patient_principal(*, spid: str, name: str | None) -> Principal:
    return Principal(role="PAT", user_id=spid, user_id_qualifier="urn:e-health-suisse:2015:epr-spid", name=name,
                     patient_spid=spid, client_id=PORTAL_CLIENT)


def representative_principal(*, representative_id: str, spid: str, name: str | None) -> Principal:
    return Principal(role="REP", user_id=representative_id, user_id_qualifier="urn:e-health-suisse:representative-id",
                     name=name, patient_spid=spid, client_id=PORTAL_CLIENT)
