"""HL7 v2 messages held until their patient is ready (`patient_readiness`): kept sealed with their reason
and their answer, listed for the operator, and processed again — automatically after what may have
fixed the cause (an ITI-104 or A08 feed, an onboarding, a resolved identity review:
`wiring.release_held_messages`), or on demand (`epr-gateway bridge held --release`).

A release is the same exchange as the message's arrival: its patient checked again by the one rule,
then `provide_many` as its sender's technical user — the access decision, the storage, the ITI-65 /
ATC_DOC_CREATE record and the message's new status (`released`, or `refused` for a record refusal) in
one transaction. One whose cause is not fixed stays held, its reason updated. The sender's kept
answer does not change: that is what it was told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy.exc import IntegrityError

from adapters.cara.store.message_inbox import DatabaseMessageInbox, HeldMessage
from adapters.cara.store.patients import DatabasePatientIndex
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.exchanges.auditing import Auditor
from gateway.exchanges.documents import DocumentExchange
from gateway.exchanges.failures import is_content_failure, where_raised
from gateway.exchanges.message_answers import Answer, MessageAnswers
from gateway.exchanges.message_outcomes import IncomingDocument
from gateway.exchanges.patient_readiness import (
    EPR_NOT_OPENED,
    FIXED_WHEN,
    IDENTITY_CONFLICT,
    IDENTITY_REVIEW,
    NO_EPR,
    UNKNOWN_PATIENT,
    PatientReadiness,
    Readiness,
)

__all__ = ["HeldMessage", "HeldMessages", "Released", "Unreadable", "waiting"]
log = logging.getLogger("epr.mllp")
RELEASE_COMMAND = "`epr-gateway held --release`"
# Why a held message processed again may still wait, besides its patient (the bridge's own reasons).
ACCESS_REFUSED = "access-refused"  # the patient's policies do not (yet) let the sender's HCP write
UNKNOWN_SENDER = "unknown-sender"  # its sender is no longer in the senders file: nobody to act for
WAITS_FOR = {  # code → (why, what releases it), for a listing (which keeps codes, not the details)
    UNKNOWN_PATIENT: ("no patient id it names is in the MPI", FIXED_WHEN[UNKNOWN_PATIENT]),
    NO_EPR: ("the patient has no EPR (no EPR-SPID)", FIXED_WHEN[NO_EPR]),
    EPR_NOT_OPENED: ("the patient's EPR is not opened yet (no onboarding policies)", FIXED_WHEN[EPR_NOT_OPENED]),
    IDENTITY_CONFLICT: ("its demographics differ from the MPI", FIXED_WHEN[IDENTITY_CONFLICT]),
    IDENTITY_REVIEW: ("an identity review case names the patient", FIXED_WHEN[IDENTITY_REVIEW]),
    "under-review": ("an identity review case names the patient", FIXED_WHEN[IDENTITY_REVIEW]),  # held before 0010
    ACCESS_REFUSED: ("the patient's policies refuse the write", "the patient grants access"),
    UNKNOWN_SENDER: ("its sender is no longer in the senders file", "the sender is in the senders file again"),
}
THEN = f" (or by {RELEASE_COMMAND})"


@dataclass(frozen=True)
class Released:
    """What processing a held message again did: `released` (document stored, or already present),
    `refused` (the record refused it: audited, no longer held), `held` (the cause is not fixed)."""

    held_id: str
    sender: str
    control_id: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class Unreadable:
    """A held message that no longer reads as a document (the code tables changed since it arrived)."""

    principal: Principal
    transaction: str
    error: Exception


# How the face reads a held message again: the document as it would take it now (mapped with today's
# code tables), why it no longer reads, or None (its sender is gone from the senders file).
Reread = Callable[[HeldMessage], "IncomingDocument | Unreadable | None"]


def waiting(held: HeldMessage) -> str:
    """Why a held message waits and what releases it, in words (names a review case, never a value)."""
    why, fixed_when = WAITS_FOR.get(held.reason, (held.reason, "its cause is fixed"))
    case = f" (identity review case {held.review_id})" if held.review_id else ""
    return f"{why}{case}; it waits until {fixed_when}{THEN}"


class HeldMessages:
    def __init__(self, *, inbox: DatabaseMessageInbox, answers: MessageAnswers, readiness: PatientReadiness,
                 exchange: DocumentExchange, patients: DatabasePatientIndex, auditor: Auditor):
        self._inbox = inbox
        self._patients = patients
        self._answers = answers
        self._readiness = readiness
        self._exchange = exchange
        self._auditor = auditor

    def hold(self, item: IncomingDocument, readiness: Readiness, answer: Answer) -> bytes:
        """Keep the message sealed, its answer, and the audit record, in one transaction."""
        record = self._auditor.record(item.transaction, item.principal, action="C",
                                      outcome_description=f"held: {readiness.detail}")
        try:
            self._inbox.hold(key=item.key.stored, reason=readiness.hold, pid=readiness.pid,
                             review_id=readiness.review_id, raw=item.raw, ack_code=answer.code, ack=answer.ack,
                             within=lambda connection: self._auditor.write(connection, [record]))
        except IntegrityError:  # a concurrent copy of the message was answered first: its answer stands
            earlier = self._answers.earlier(item.key)
            if earlier is None:
                raise
            return earlier
        return answer.ack

    def any_held(self) -> bool:
        return self._inbox.any_held()

    def listing(self, *, pids: tuple[str, ...] | None = None) -> list[HeldMessage]:
        """The messages held, oldest first, with their reasons (not opened)."""
        return self._inbox.held_messages(pids=pids)

    def release(self, *, reread: Reread, pid: str | None = None) -> list[Released]:
        """Process the held messages again (those of `pid`'s merged record only, when given), oldest
        first (see the module)."""
        pids = self._patients.pids_for(self._patients.surviving_pid(pid)) if pid else None
        return [self._release(held, reread) for held in self._inbox.held_messages(pids=pids, opened=True)]

    def _release(self, held: HeldMessage, reread: Reread) -> Released:
        def answer(outcome: str, detail: str) -> Released:
            return Released(held.id, held.sender, held.control_id, outcome, detail)

        read = reread(held)
        if read is None:
            self._inbox.still_held(held.id, UNKNOWN_SENDER, held.pid)
            return answer("held", WAITS_FOR[UNKNOWN_SENDER][0])
        if isinstance(read, Unreadable):  # it read when it arrived; nobody can be told now
            self._refuse(held, read.transaction, read.principal, read.error)
            return answer("refused", getattr(read.error, "text", None) or type(read.error).__name__)
        item = read
        readiness = self._readiness.check_many([item.claim])[item.claim]
        if not readiness.ready:
            self._inbox.still_held(held.id, readiness.hold, readiness.pid, readiness.review_id)
            return answer("held", readiness.explained(THEN))
        outcome: list = []

        def within(connection, outcomes) -> None:
            outcome.extend(outcomes)
            error = outcomes[0].error
            if not isinstance(error, AccessRefused):  # refused by consent: may be granted later, stays held
                self._inbox.settle(connection, held.id, "released" if error is None else "refused")

        try:
            self._exchange.provide_many(principal=item.principal, submissions=[
                replace(item.submission, spid=readiness.spid)], within=within)
        except Exception as error:
            if not is_content_failure(error):
                raise  # a dependency: it stays held, as it was
            log.warning("a held HL7 v2 message cannot be stored (%s at %s)", type(error).__name__,
                        where_raised(error))
            self._refuse(held, item.transaction, item.principal, error)
            return answer("refused", f"its content cannot be stored ({type(error).__name__})")
        error = outcome[0].error
        if error is None:
            return answer("released", "document stored" if outcome[0].created else "document already in the record")
        if isinstance(error, AccessRefused):
            self._inbox.still_held(held.id, ACCESS_REFUSED, readiness.pid)
            return answer("held", f"{WAITS_FOR[ACCESS_REFUSED][0]}: {error.reason}")
        return answer("refused", getattr(error, "message", None) or str(error))

    def _refuse(self, held: HeldMessage, transaction: str, principal, error: Exception) -> None:
        """Nobody can be told now: its refusal audited and its status settled, together."""
        with self._auditor.engine.begin() as connection:
            self._auditor.write(connection, [self._auditor.failure_record(transaction, principal, error)])
            self._inbox.settle(connection, held.id, "refused")
