"""The HL7 v2 use-case: one message from an identified sender → the same use-cases as FHIR (provide,
ITI-104 registration, merge) → the ACK, kept per (sender, MSH-10) so a repeat gets the same answer.

AA only once the result is durable: the document committed with its audit record, or the message held
for identity review (sealed, with its reason). AE names what the sender must fix (ERR), AR what
cannot be processed. A failure of the gateway itself (store or ledger down) is answered AR and not
remembered, so the sender's retry is processed afresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from adapters.cara.errors import Conflict, InvalidInput, NotFound, ProfileViolation, RecordError, UnknownPatient
from adapters.cara.identity import IdentityConflict
from adapters.cara.model import Identifier, Submission
from adapters.cara.store.message_inbox import DatabaseMessageInbox
from adapters.infomed.hl7v2 import adt, documents
from adapters.infomed.hl7v2.acks import build_ack
from adapters.infomed.hl7v2.errors import (
    APPLICATION_ERROR,
    DUPLICATE_KEY,
    UNKNOWN_KEY,
    CannotProcess,
    MessageError,
    SenderMustFix,
)
from adapters.infomed.hl7v2.message import Message
from adapters.infomed.hl7v2.structures import structure_for
from consent.principal import Principal
from gateway.exchanges.auditing import Auditor
from gateway.auth.errors import AccessRefused
from gateway.exchanges.documents import DocumentExchange
from gateway.exchanges.identity import IdentityExchange
from gateway.exchanges.senders import Sender, SenderRegistry

log = logging.getLogger("epr.mllp")

# Held-for-review reasons (kept in clear beside the sealed message)
NO_EPR = "no-epr"  # the patient is in the MPI but has no EPR (no SPID): nothing to file into yet
UNDER_REVIEW = "under-review"  # an identity review case names the patient
# ... and why a held message processed again still waits
UNKNOWN_PATIENT = "unknown-patient"  # PID-3 no longer names a patient of the MPI (e.g. unmerged, removed)
UNKNOWN_SENDER = "unknown-sender"  # its sender is no longer in the senders file: nobody to act for
NOT_OPENED = "epr-not-opened"  # the patient has a SPID but no onboarding policies yet
ACCESS_REFUSED = "access-refused"  # the patient's policies do not (yet) let the sender's HCP write
HELD_STILL = {NO_EPR: "the patient still has no EPR (no EPR-SPID)",
              UNDER_REVIEW: "an identity review still names the patient",
              NOT_OPENED: "the patient's EPR is not opened yet (no onboarding policies)",
              ACCESS_REFUSED: "the patient's policies refuse the write"}


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
class PendingDocument:
    """A document message read, its sender identified and mapped to the record's model, waiting for
    its batch (`commit_documents`), where its patient is resolved and it is provided."""

    message: Message
    raw: bytes
    sender: Sender
    principal: Principal
    mapped: documents.DocumentMessage

    @property
    def key(self) -> tuple[str, str]:
        return self.sender.key, self.message.control_id

    @property
    def transaction(self) -> str:
        code, trigger, _ = self.message.message_type
        return f"HL7v2 {code}^{trigger}"


class Hl7Exchange:
    def __init__(self, *, exchange: DocumentExchange, identities: IdentityExchange, inbox: DatabaseMessageInbox,
                 auditor: Auditor, senders: SenderRegistry):
        self.exchange = exchange
        self.identities = identities
        self.inbox = inbox
        self.auditor = auditor
        self.senders = senders

    def handle(self, raw: bytes, *, certificate_subject: str | None = None,
               defer_documents: bool = False) -> bytes | PendingDocument:
        """The ACK for one framed message (bytes without MLLP framing). With `defer_documents`, a
        document that passed every check comes back as a PendingDocument for `commit_documents` (the
        listener's group commit) instead of being provided on its own."""
        try:
            message = Message.parse(raw)
            code, trigger, _ = message.message_type
        except MessageError as error:  # unreadable: answered, audited, nothing else
            self.auditor.failure("HL7v2", None, error)
            return build_ack(None, "AR", text=error.text, error=error)
        msh = message.msh
        sender = self.senders.identify(facility=(msh.component(4, 1), msh.component(4, 2)),
                                       application=msh.component(3, 1), certificate_subject=certificate_subject)
        if sender is None:
            error = CannotProcess("unknown sender: MSH-4/MSH-3 (and client certificate) are not in the senders file",
                                  code=APPLICATION_ERROR, segment="MSH", field=4)
            self.auditor.failure(f"HL7v2 {code}^{trigger}", None, error)
            return build_ack(message, "AR", text=error.text, error=error)
        if not message.control_id:
            error = SenderMustFix("MSH-10 (message control id) is required", code="101", segment="MSH", field=10)
            self.auditor.failure(f"HL7v2 {code}^{trigger}", sender.principal(certificate_subject), error)
            return build_ack(message, "AE", text=error.text, error=error)
        # A deferred document's repeat is recognised by its batch, with one look-up for all of them.
        deferred = defer_documents and code in ("MDM", "ORU")
        earlier = None if deferred else self.inbox.answer(sender.key, message.control_id)
        if earlier is not None:
            return earlier  # the same message again: the same answer, nothing changes
        principal = sender.principal(certificate_subject)
        try:
            code_and_ack = self._process(message, raw, sender, principal, defer_documents)
        except MessageError as error:
            earlier = self.inbox.answer(sender.key, message.control_id) if deferred else None
            if earlier is not None:
                return earlier
            if not getattr(error, "audited", False):
                self.auditor.failure(f"HL7v2 {code}^{trigger}", principal, error)
            code_and_ack = (error.ack_code, build_ack(message, error.ack_code, text=error.text, error=error))
        except Exception:  # the gateway's own failure: not the sender's fault, not remembered
            log.exception("HL7 v2 message from %s could not be processed", sender.key)
            error = CannotProcess("the gateway could not process the message now; send it again later",
                                  code=APPLICATION_ERROR)
            return build_ack(message, "AR", text=error.text, error=error)
        if code_and_ack is None:
            return self.inbox.answer(sender.key, message.control_id) or b""
        if isinstance(code_and_ack, PendingDocument):
            return code_and_ack
        ack_code, ack = code_and_ack
        return self.inbox.remember(sender.key, message.control_id, ack_code, ack)

    def pending(self, read, raw: bytes, *, certificate_subject: str | None = None) -> PendingDocument:
        """A document read and mapped in a worker process (`mllp.mapping_pool.read_document`, the same
        steps as `handle` takes for it) as a PendingDocument for `commit_documents`: the sender is
        this registry's entry, the principal is built here, never in the worker."""
        sender = self.senders.senders[read.sender_index]
        return PendingDocument(read.message, raw, sender, sender.principal(certificate_subject), read.mapped)

    # -- dispatch ---------------------------------------------------------------------------------
    def _process(self, message: Message, raw: bytes, sender: Sender, principal, defer: bool = False):
        code, trigger, _ = message.message_type
        structure_for(code, trigger)  # AR for what this gateway does not take
        if code in ("MDM", "ORU"):
            return self._document(message, raw, sender, principal, defer)
        if trigger == "A08":
            return self._demographics(message, sender, principal)
        return self._merge(message, sender, principal)

    def _document(self, message: Message, raw: bytes, sender: Sender, principal, defer: bool = False):
        mapped = documents.document_message(message, sender_key=sender.key, profile=sender.profile,
                                            tables=self.senders.tables)
        if defer:
            return PendingDocument(message, raw, sender, principal, mapped)
        pid, spid, reason = self._patient(mapped.patient_identifiers)
        if reason is not None:
            return self._hold(message, raw, sender, principal, reason, pid)
        submission = replace(mapped.submission, spid=spid)
        try:
            self.exchange.provide_submission(principal=principal, submission=submission)
        except RecordError as error:
            raise _message_error(error, relation=bool(submission.documents[0].relations)) from error
        except AccessRefused as error:
            refused = CannotProcess(f"refused: {error.reason if hasattr(error, 'reason') else error}",
                                    code=APPLICATION_ERROR)
            refused.audited = True  # provide_submission recorded the refusal
            raise refused from error
        return "AA", build_ack(message, "AA", text="document stored")

    def _patient(self, identifiers: tuple[Identifier, ...]) -> tuple[str, str | None, str | None]:
        """(MPI-PID, SPID, reason to hold or None) of the first PID-3 identifier the MPI knows (the
        survivor when merged); AE when none is known: a patient is never guessed."""
        resolved = self._patients([identifiers])[identifiers]
        if isinstance(resolved, MessageError):
            raise resolved
        return resolved

    def _patients(self, messages: list[tuple[Identifier, ...]]) -> dict[tuple[Identifier, ...], tuple | MessageError]:
        """`_patient` for each message's PID-3 of a batch (the answer, or the error to answer with),
        resolved together on one connection (`resolve_many`)."""
        answers: dict[tuple[Identifier, ...], tuple | MessageError] = {}
        for identifiers, resolved in self.exchange.patients.resolve_many(messages).items():
            if resolved is None:
                answers[identifiers] = SenderMustFix(f"unknown patient: PID-3 {_names(identifiers)} is not in the "
                                                     "MPI (send the ADT feed first)", code=UNKNOWN_KEY,
                                                     segment="PID", field=3)
            elif resolved.record is None or not resolved.record.spid:
                answers[identifiers] = (resolved.pid, None, NO_EPR)
            else:
                answers[identifiers] = (resolved.pid, resolved.record.spid,
                                        UNDER_REVIEW if resolved.under_review else None)
        return answers

    def commit_documents(self, items: list[PendingDocument]) -> list[bytes]:
        """The ACK of each pending document. Per batch: one look-up of earlier answers, each patient
        resolved once, then one `provide_many` per sender, whose transaction also holds the audit
        records and the answers, so an AA leaves only once all are durable. A repeat of a
        (sender, MSH-10), in this batch or answered before, gets the first copy's answer."""
        firsts: dict[tuple[str, str], PendingDocument] = {}
        for item in items:
            firsts.setdefault(item.key, item)
        acks = self.inbox.answers(list(firsts))
        ready: dict[tuple, list[tuple[PendingDocument, Submission]]] = {}
        refused: list[tuple[PendingDocument, MessageError]] = []
        try:
            patients = self._patients([item.mapped.patient_identifiers for key, item in firsts.items()
                                       if key not in acks])
            for key, item in firsts.items():
                if key in acks:
                    continue
                resolved = patients[item.mapped.patient_identifiers]
                if isinstance(resolved, MessageError):
                    refused.append((item, resolved))
                    continue
                pid, spid, reason = resolved
                if reason is not None:
                    self._hold(item.message, item.raw, item.sender, item.principal, reason, pid)
                    acks[key] = self.inbox.answer(*key) or b""
                    continue
                group = ready.setdefault((item.sender.key, item.principal.client_certificate), [])
                group.append((item, replace(item.mapped.submission, spid=spid)))
            acks.update(self._refuse(refused))
        except Exception:
            log.exception("a batch of %d HL7 v2 documents could not be checked", len(firsts))
            return [acks.get(item.key) or _try_again(item.message) for item in items]
        for group in ready.values():
            acks.update(self._commit_group(group))
        return [acks[item.key] for item in items]

    def _refuse(self, refused: list[tuple[PendingDocument, MessageError]]) -> dict[tuple[str, str], bytes]:
        """Refusals found in the batch (unknown patient): audited and answered in one transaction."""
        if not refused:
            return {}
        answers = {item.key: (error.ack_code, build_ack(item.message, error.ack_code, text=error.text, error=error))
                   for item, error in refused}
        with self.auditor.engine.begin() as connection:
            earlier = self.inbox.answers_in(connection, list(answers))
            self.auditor.write_many(connection, [self.auditor.failure_record(item.transaction, item.principal, error)
                                                 for item, error in refused if item.key not in earlier])
            self.inbox.remember_many(connection, [(*key, *answer) for key, answer in answers.items()
                                                  if key not in earlier])
        return {key: earlier.get(key, ack) for key, (_, ack) in answers.items()}

    def _commit_group(self, group: list[tuple[PendingDocument, Submission]]) -> dict[tuple[str, str], bytes]:
        answers: dict[tuple[str, str], tuple[str, bytes]] = {}
        earlier: dict[tuple[str, str], bytes] = {}
        # Written before the transaction (sent only after its commit): the answer when stored.
        stored = {item.key: build_ack(item.message, "AA", text="document stored") for item, _ in group}

        def within(connection, outcomes) -> None:
            # A copy answered by a concurrent batch (another process) keeps that answer.
            earlier.update(self.inbox.answers_in(connection, [item.key for item, _ in group]))
            for (item, submission), outcome in zip(group, outcomes, strict=True):
                answers[item.key] = (("AA", stored[item.key]) if outcome.error is None
                                     else self._outcome_ack(item, submission, outcome.error))
            self.inbox.remember_many(connection, [(*key, *answer) for key, answer in answers.items()
                                                  if key not in earlier])

        try:
            self.exchange.provide_many(principal=group[0][0].principal, submissions=[s for _, s in group],
                                       within=within)
        except Exception:
            log.exception("a batch of %d HL7 v2 documents could not be stored", len(group))
            return {item.key: _try_again(item.message) for item, _ in group}
        return {key: earlier.get(key, ack) for key, (_, ack) in answers.items()}

    def _outcome_ack(self, item: PendingDocument, submission: Submission,
                     error: Exception | None) -> tuple[str, bytes]:
        if error is None:
            return "AA", build_ack(item.message, "AA", text="document stored")
        if isinstance(error, AccessRefused):
            mapped: MessageError = CannotProcess(f"refused: {error.reason}", code=APPLICATION_ERROR)
        elif isinstance(error, RecordError):
            try:
                mapped = _message_error(error, relation=bool(submission.documents[0].relations))
            except RecordError:
                mapped = CannotProcess("the gateway could not store the message", code=APPLICATION_ERROR)
        else:
            mapped = CannotProcess("the gateway could not store the message", code=APPLICATION_ERROR)
        return mapped.ack_code, build_ack(item.message, mapped.ack_code, text=mapped.text, error=mapped)

    def _hold(self, message: Message, raw: bytes, sender: Sender, principal, reason: str, pid: str):
        text = {NO_EPR: "held for identity review: the patient has no EPR (no EPR-SPID) in this community",
                UNDER_REVIEW: "held for identity review: an identity review case names this patient"}[reason]
        ack = build_ack(message, "AA", text=text)
        code, trigger, _ = message.message_type

        def audit(connection) -> None:
            self.auditor.write(connection, [self.auditor.record(f"HL7v2 {code}^{trigger}", principal, action="C",
                                                                outcome_description=text)])

        self.inbox.hold(sender=sender.key, control_id=message.control_id, reason=reason, pid=pid, raw=raw,
                        ack_code="AA", ack=ack, within=audit)
        return None  # the answer was kept with the held message

    # -- held messages --------------------------------------------------------------------------
    def held_messages(self, *, pids: tuple[str, ...] | None = None):
        """The messages held for identity review, with their reasons (not opened)."""
        return self.inbox.held_messages(pids=pids)

    def release_held(self, *, pid: str | None = None) -> list[Released]:
        """Process the held messages again (those of `pid`'s merged record only, when given), oldest
        first, each as its sender's technical user: patient resolved afresh, then `provide_many` — the
        access decision, the storage and its ITI-65 audit record — with the message marked released
        (or refused) in the same transaction. One whose cause is not fixed stays held, its reason
        updated. The sender's kept answer (AA, held) does not change: that is what it was told."""
        pids = self.exchange.patients.pids_for(self.exchange.patients.surviving_pid(pid)) if pid else None
        return [self._release(held) for held in self.inbox.held_messages(pids=pids, opened=True)]

    def release_held_quietly(self, pid: str) -> None:
        """`release_held(pid=…)` after a change that may have fixed a held message's cause (a feed, a
        onboarding, a review resolved; see `wiring.release_held_messages`): the change itself is done and answered
        whatever happens here; a failure is logged and the messages stay held for `bridge retry`."""
        try:
            for released in self.release_held(pid=pid):
                log.info("held HL7 v2 message %s processed again: %s", released.held_id, released.outcome)
        except Exception:
            log.exception("held HL7 v2 messages of a changed patient could not be processed again")

    def _release(self, held) -> Released:
        def answer(outcome: str, detail: str) -> Released:
            return Released(held.id, held.sender, held.control_id, outcome, detail)

        sender = next((s for s in self.senders.senders if s.key == held.sender), None)
        if sender is None:
            self.inbox.still_held(held.id, UNKNOWN_SENDER, held.pid)
            return answer("held", "its sender is no longer in the senders file")
        principal = sender.principal(sender.certificate_subject)
        message = Message.parse(held.raw)
        code, trigger, _ = message.message_type
        try:
            mapped = documents.document_message(message, sender_key=sender.key, profile=sender.profile,
                                                tables=self.senders.tables)
            pid, spid, reason = self._patient(mapped.patient_identifiers)
        except MessageError as error:
            if error.code == UNKNOWN_KEY:  # the patient is gone from the MPI: it may come back
                self.inbox.still_held(held.id, UNKNOWN_PATIENT, held.pid)
                return answer("held", error.text)
            # It read when it arrived; the code tables have changed since. Nobody can be told now.
            with self.auditor.engine.begin() as connection:  # its refusal and its status together
                self.auditor.write_many(connection, [self.auditor.failure_record(f"HL7v2 {code}^{trigger}",
                                                                                 principal, error)])
                self.inbox.settle(connection, held.id, "refused")
            return answer("refused", error.text)
        if reason is None and not self.exchange.access.policies(pid):
            reason = NOT_OPENED
        if reason is not None:
            self.inbox.still_held(held.id, reason, pid)
            return answer("held", HELD_STILL[reason])
        outcome: list = []

        def within(connection, outcomes) -> None:
            outcome.extend(outcomes)
            error = outcomes[0].error
            if not isinstance(error, AccessRefused):  # refused by consent: may be granted later, stays held
                self.inbox.settle(connection, held.id, "released" if error is None else "refused")

        self.exchange.provide_many(principal=principal, submissions=[replace(mapped.submission, spid=spid)],
                                   within=within)
        error = outcome[0].error
        if error is None:
            return answer("released", "document stored" if outcome[0].created else "document already in the record")
        if isinstance(error, AccessRefused):
            self.inbox.still_held(held.id, ACCESS_REFUSED, pid)
            return answer("held", f"{HELD_STILL[ACCESS_REFUSED]}: {error.reason}")
        return answer("refused", getattr(error, "message", None) or str(error))

    def _demographics(self, message: Message, sender: Sender, principal):
        feed = adt.patient_feed(message, assigning_authority=sender.profile.assigning_authority)
        try:
            self.identities.register_patient_record(principal=principal, source=feed.source, incoming=feed.incoming)
        except IdentityConflict as conflict:
            # The MPI kept the case (durable): accepted, held for review, and the sender is told why.
            text = f"held for identity review ({conflict.reason}), case {conflict.review_id}"
            warning = MessageError(text, code=DUPLICATE_KEY, segment="PID", field=3)
            return "AA", build_ack(message, "AA", text=text, error=warning, warning=True)
        except RecordError as error:
            raise _message_error(error, relation=False) from error
        except AccessRefused as error:
            raise _refused(error) from error
        return "AA", build_ack(message, "AA", text="patient registered")

    def _merge(self, message: Message, sender: Sender, principal):
        merge = adt.merge(message, assigning_authority=sender.profile.assigning_authority)
        patients = self.exchange.patients
        surviving = _first_pid(patients, merge.surviving, ("PID", 3))
        retired = _first_pid(patients, merge.retired, ("MRG", 1))
        try:
            self.identities.merge_patients(principal=principal, retired=retired, surviving=surviving)
        except RecordError as error:
            raise _message_error(error, relation=False) from error
        except AccessRefused as error:
            raise _refused(error) from error
        return "AA", build_ack(message, "AA", text="patients merged")


def _try_again(message: Message) -> bytes:
    """AR for the gateway's own failure (store or ledger down): not remembered, so a retry is processed."""
    error = CannotProcess("the gateway could not store the message now; send it again later", code=APPLICATION_ERROR)
    return build_ack(message, "AR", text=error.text, error=error)


def _first_pid(patients, identifiers: tuple[Identifier, ...], where: tuple[str, int]) -> str:
    for identifier in identifiers:
        pid = patients.pid_for_identifier(identifier, follow_merges=False)
        if pid:
            return pid
    raise SenderMustFix(f"unknown patient: {where[0]}-{where[1]} {_names(identifiers)} is not in the MPI",
                        code=UNKNOWN_KEY, segment=where[0], field=where[1])


def _names(identifiers: tuple[Identifier, ...]) -> str:
    # The assigning authorities only: an ACK is not the place for a patient's local id.
    return ", ".join(sorted({i.system for i in identifiers}))


def _message_error(error: RecordError, *, relation: bool) -> MessageError:
    """The record's refusal in HL7 terms; the use-case already audited it."""
    if isinstance(error, UnknownPatient):  # its message names the SPID: not for the ACK
        mapped = SenderMustFix("the patient is not registered in this community", code=UNKNOWN_KEY,
                               segment="PID", field=3)
    elif isinstance(error, ProfileViolation) and relation:
        mapped = SenderMustFix(f"TXA-13: {error.message}", code=UNKNOWN_KEY, segment="TXA", field=13)
    elif isinstance(error, Conflict):
        mapped = SenderMustFix(error.message, code=DUPLICATE_KEY, segment="TXA", field=12)
    elif isinstance(error, (InvalidInput, ProfileViolation, NotFound)):
        mapped = SenderMustFix(error.message, code=APPLICATION_ERROR)
    else:
        raise error
    mapped.audited = True
    return mapped


def _refused(error: AccessRefused) -> CannotProcess:
    """An access refusal as the AR the sender gets; the use-case that refused has already audited it."""
    refused = CannotProcess(f"refused: {error}", code=APPLICATION_ERROR)
    refused.audited = True
    return refused
