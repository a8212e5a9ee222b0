"""The policy decision point as the use-cases call it: current policies, decisions, obligations.

Every exchange asks here before it touches a patient's record. Policies come from the store through
the configured cache; obligations (notify the patient of an emergency access) are fulfilled here,
before the answer leaves, so no emergency access happens without its notification.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime

from adapters.cara.model import DocumentEntry
from adapters.cara.store.submission_sets import SetDocument
from consent import pdp
from consent.cache import PolicyCache
from consent.policies import Policy
from consent.principal import Principal
from consent.store import DatabaseNotificationStore, DatabasePolicyStore
from gateway import metrics
from gateway.auth.errors import AccessRefused

# The patients of a merged record as (MPI-PID, SPID), the surviving one first (see `DatabasePatientIndex.record_of`).
Members = tuple[tuple[str, str | None], ...]


class AccessControl:
    def __init__(self, *, policies: DatabasePolicyStore, cache: PolicyCache,
                 notifications: DatabaseNotificationStore, provide_level_mode: str,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date()):
        self.store = policies
        self.cache = cache
        self.notifications = notifications
        self.provide_level_mode = provide_level_mode
        self.today = today
        self._fresh = threading.local()  # see `read_fresh`

    @staticmethod
    def require_patient_context(principal: Principal, spid: str) -> None:
        """A token bound to a patient (PAT, REP, extended token) acts on that patient only: 403."""
        if principal.patient_spid is not None and principal.patient_spid != spid:
            raise AccessRefused("the token is bound to another patient than the one of this request")

    def policies(self, pid: str) -> list[Policy]:
        fresh = getattr(self._fresh, "policies", None)
        if fresh is not None and pid in fresh:
            return fresh[pid]
        return self.cache.get(pid, lambda: self.store.policies_for(pid))

    def policies_many(self, pids: Iterable[str]) -> dict[str, list[Policy]]:
        """`policies` of each of `pids` (a batch's patients): those the cache does not hold are read
        together, in one IN-list query, instead of one query each."""
        fresh = getattr(self._fresh, "policies", None) or {}
        wanted = list(dict.fromkeys(pids))
        found = {pid: fresh[pid] for pid in wanted if pid in fresh}
        found.update(self.cache.get_many([pid for pid in wanted if pid not in fresh], self.store.policies_for_many))
        return found

    @contextlib.contextmanager
    def read_fresh(self, pids: Iterable[str]):
        """Decisions made by this thread inside the block use the policies of `pids` as stored now,
        read together, not as this process's cache remembers them. Why: a batch (a migration's, an
        HL7 v2 group) may be decided in another process than the one where the patient changes
        their consent (`epr-gateway migrate` beside the gateway on the embedded default, whose
        caches are per process without Redis): a raised provide level or a closed record must count
        from the next batch on. Patients outside `pids` are decided as usual (cache, then store)."""
        with self.decided_on(self.store.policies_for_many(list(dict.fromkeys(pids)))):
            yield

    @contextlib.contextmanager
    def decided_on(self, policies: dict[str, list[Policy]]):
        """`read_fresh` with policies this caller read from the store itself (`store.policies_for_many`):
        the deliverer reads a claimed batch's patients together, then decides each in its sender thread."""
        previous = getattr(self._fresh, "policies", None)
        self._fresh.policies = policies
        try:
            yield
        finally:
            self._fresh.policies = previous

    def owner_policies(self, *, spid: str, pid: str, group: Members = ()) -> list[Policy]:
        """The policies a document of patient (`spid`, `pid`) is decided under. `group`: every patient
        (pid, spid) of its merged record, when it is part of one; then the rule of
        `pdp.policies_for_merged` applies (deny-overrides, a grant only for its patient's documents)."""
        if len(group) <= 1:
            return self.policies(pid)
        return pdp.policies_for_merged(owner_spid=spid,
                                       policies=[p for member, _ in group for p in self.policies(member)])

    def decide(self, principal: Principal, *, spid: str, pid: str, action: str,
               confidentiality: str | None = None, group: Members = ()) -> pdp.Decision:
        decision = pdp.decide(principal=principal, patient_spid=spid, action=action, confidentiality=confidentiality,
                              policies=self.owner_policies(spid=spid, pid=pid, group=group), today=self.today())
        metrics.consent_decided(action=action if action in pdp.ACTIONS else "other", result=(
            ("permit-notify" if pdp.NOTIFY_PATIENT in decision.obligations else "permit") if decision.permit
            else "deny"))
        return decision

    def require(self, principal: Principal, *, spid: str, pid: str, action: str,
                confidentiality: str | None = None, group: Members = ()) -> pdp.Decision:
        decision = self.decide(principal, spid=spid, pid=pid, action=action, confidentiality=confidentiality,
                               group=group)
        if not decision.permit:
            raise AccessRefused(decision.reason)
        return decision

    def visible_levels(self, principal: Principal, *, spid: str, pid: str, group: Members = ()) -> frozenset[str]:
        """What a search may show (a decision per level, counted as one: `search`)."""
        levels = pdp.visible_levels(principal=principal, patient_spid=spid,
                                    policies=self.owner_policies(spid=spid, pid=pid, group=group), today=self.today())
        metrics.consent_decided(action="search", result="some-visible" if levels else "none-visible")
        return levels

    def upload_level(self, requested: str, *, pid: str, spid: str | None = None, group: Members = ()) -> str:
        """The confidentiality an upload is stored with: raised to the provide level (203), never lowered;
        below it and in reject mode, ProvideLevelViolation. In a merged record the most restrictive
        provide level of its patients counts."""
        policies = self.owner_policies(spid=spid, pid=pid, group=group) if spid else self.policies(pid)
        return pdp.apply_provide_level(requested=requested, policies=policies, mode=self.provide_level_mode)

    def fulfil(self, decision: pdp.Decision, principal: Principal, *, pid: str, what: str,
               documents: Sequence[DocumentEntry | SetDocument] = ()) -> None:
        if pdp.NOTIFY_PATIENT in decision.obligations:
            self.notifications.add(pid=pid, notice={
                "kind": "emergency-access",
                "what": what,
                "documents": [d.unique_id for d in documents],
                # What the patient's page names each document by (its link and its type), sealed as the rest.
                # (A List's documents are named without their type: the set's rows do not carry it.)
                "entries": [{"id": d.entry_id, **_type_of(d)} for d in documents],
                "by": {"role": principal.role, "id": principal.user_id, "name": principal.name,
                       "organisation": principal.organisation, "acting_for": principal.acting_for},
                "purpose_of_use": principal.purpose_of_use,
                "reason": principal.emergency_reason,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            })


def _type_of(document: DocumentEntry | SetDocument) -> dict:
    """A document's type for the notice; a List's rows (`SetDocument`) do not carry one."""
    if isinstance(document, DocumentEntry) and document.type_code is not None:
        return {"type": [document.type_code.system, document.type_code.code]}
    return {}
