"""The HL7 v2 face as a channel (Mirth's source → channel → destination, IPF's route per transaction):
one framed message in, read and routed by its type to the use-cases, one acknowledgement out.

    read (normalise, tokenize) → identify the sender (senders file) → which message (MSH-10 + digest):
    the same message again gets its kept answer → route: MDM/ORU → `DocumentMessages` (a batch: the
    listener's group commit), A08/A40 → `PatientMessages` → outcome → the one table (`acks.answer`) →
    kept for the message, unless the gateway itself failed.

The channel reaches the record only through the use-cases (gateway/exchanges: message_documents,
message_patients, held_messages, message_answers); it knows HL7 (reading, mapping, answers), they
know the record.
"""

from __future__ import annotations

import logging

from adapters.cara.errors import RecordError
from adapters.infomed.hl7v2 import adt, documents
from adapters.infomed.hl7v2.errors import APPLICATION_ERROR, CannotProcess, MessageError
from adapters.infomed.hl7v2.message import Message
from adapters.infomed.hl7v2.structures import structure_for
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.exchanges.auditing import Auditor, current_request
from gateway.exchanges.failures import is_content_failure, is_dependency_failure, where_raised
from gateway.exchanges.held_messages import HeldMessage, HeldMessages, Released, Unreadable
from gateway.exchanges.message_answers import MessageAnswers, MessageKey
from gateway.exchanges.message_documents import DocumentMessages
from gateway.exchanges.message_outcomes import IncomingDocument, Outcome, Refused, TryAgain
from gateway.exchanges.message_patients import PatientMessages
from gateway.mllp import acks, reading
from gateway.mllp.senders import Sender, SenderRegistry

log = logging.getLogger("epr.mllp")
DOCUMENT_CODES = ("MDM", "ORU")


class Hl7Channel:
    def __init__(self, *, documents: DocumentMessages, patients: PatientMessages, held: HeldMessages,
                 answers: MessageAnswers, auditor: Auditor, senders: SenderRegistry, door_refusals=None):
        self.documents = documents
        # The MLLP door's refusal windows (gateway/mllp/door.py): an unknown sender is recorded once per
        # window and address, the rest counted into its summary, so a flood costs no ledger write each.
        self.door_refusals = door_refusals
        self.patients = patients
        self.held = held
        self.answers = answers
        self.auditor = auditor
        self.senders = senders

    def _first_refusal_of_window(self, reason: str) -> bool:
        """Whether this refusal is recorded now (the first of its address's window), or only counted."""
        if self.door_refusals is None:
            return True
        return self.door_refusals.refused(current_request.get().client_address, reason)

    def handle(self, raw: bytes, *, certificate_subject: str | None = None,
               defer_documents: bool = False) -> bytes | IncomingDocument:
        """The ACK for one framed message (bytes without MLLP framing). With `defer_documents`, a
        document that passed every check comes back as an IncomingDocument for `commit_documents` (the
        listener's group commit) instead of being stored on its own."""
        try:
            message = Message.parse(raw)
            code, trigger, _ = message.message_type
        except MessageError as error:  # unreadable: answered, audited, nothing else
            self.auditor.failure("HL7v2", None, error)
            return acks.answer(None, Refused(error)).ack
        transaction = f"HL7v2 {code}^{trigger}"
        msh = message.msh
        sender = self.senders.identify(facility=(msh.component(4, 1), msh.component(4, 2)),
                                       application=msh.component(3, 1), certificate_subject=certificate_subject)
        principal = sender.principal(certificate_subject) if sender is not None else None
        try:
            if sender is None:
                raise CannotProcess("unknown sender: MSH-4/MSH-3 (and client certificate) are not in the senders "
                                    "file", code=APPLICATION_ERROR, segment="MSH", field=4)
            reading.require_control_id(message)
        except MessageError as error:  # nothing to keep the answer under: answered and audited only
            if sender is not None or self._first_refusal_of_window("unknown sender"):
                self.auditor.failure(transaction, principal, error)
            return acks.answer(message, Refused(error)).ack
        key = MessageKey(sender.key, message.control_id, reading.digest(message))
        document = code in DOCUMENT_CODES
        try:
            # A deferred document's repeat is recognised by its batch, with one look-up for all of them.
            earlier = None if defer_documents and document else self.answers.earlier(key)
            if earlier is not None:
                return earlier  # the same message again: the same answer, nothing changes
            structure_for(code, trigger)  # AR for what this gateway does not take
            if document:
                item = self._document(message, raw, sender, principal, key)
                return item if defer_documents else self.commit_documents([item])[0]
            outcome = self._patient_message(message, sender, principal, trigger)
        except Exception as error:
            outcome = _outcome_of(error, transaction)
            if document and defer_documents and isinstance(outcome, Refused):
                earlier = self._earlier(key)
                if earlier is not None:
                    return earlier  # a repeat of a message refused before: nothing is audited again
        return self._answered(message, key, transaction, principal, outcome)

    def pending(self, read, raw: bytes, *, certificate_subject: str | None = None) -> IncomingDocument:
        """A document read and mapped in a worker process (`mllp.mapping_pool.read_document`, the same
        steps as `handle` takes for it) for `commit_documents`: the sender is this registry's entry,
        the principal is built here, never in the worker."""
        sender = self.senders.senders[read.sender_index]
        code, trigger, _ = read.message.message_type
        return IncomingDocument(MessageKey(sender.key, read.message.control_id, read.digest),
                                sender.principal(certificate_subject), read.submission, read.claim, raw,
                                f"HL7v2 {code}^{trigger}", read.message)

    def commit_documents(self, items: list[IncomingDocument]) -> list[bytes]:
        """The ACK of each pending document, once its batch is durable (see `DocumentMessages`)."""
        return self.documents.commit(items, answer_for=_answer_for)

    # -- routes -----------------------------------------------------------------------------------
    def _document(self, message: Message, raw: bytes, sender: Sender, principal: Principal,
                  key: MessageKey) -> IncomingDocument:
        mapped = documents.document_message(message, sender_key=reading.set_key(sender.key, key.digest),
                                            profile=sender.profile, tables=self.senders.tables)
        reading.require_storable_dates(message, mapped)
        code, trigger, _ = message.message_type
        return IncomingDocument(key, principal, mapped.submission, reading.claim(message, mapped.patient_identifiers),
                                raw, f"HL7v2 {code}^{trigger}", message)

    def _patient_message(self, message: Message, sender: Sender, principal: Principal, trigger: str) -> Outcome:
        authority = sender.profile.assigning_authority
        if trigger == "A08":
            reading.require_possible_dates(message, reading.FEED_DATES)
            feed = adt.patient_feed(message, assigning_authority=authority)
            return self.patients.feed(principal=principal, source=feed.source, incoming=feed.incoming)
        merge = adt.merge(message, assigning_authority=authority)
        return self.patients.merge(principal=principal, surviving=merge.surviving, retired=merge.retired,
                                   authorities=sender.authorities)

    def _answered(self, message: Message, key: MessageKey, transaction: str, principal: Principal,
                  outcome: Outcome) -> bytes:
        answer = acks.answer(message, outcome)
        try:
            if isinstance(outcome, Refused) and not getattr(outcome.error, "audited", False):
                self.auditor.failure(transaction, principal, answer.refusal)
            return self.answers.keep(key, answer)
        except Exception as error:  # the refusal cannot be audited or kept: not answered as if it were
            log.error("the answer to an HL7 v2 message could not be kept (%s)", type(error).__name__)
            return acks.answer(message, TryAgain(error)).ack

    def _earlier(self, key: MessageKey) -> bytes | None:
        try:
            return self.answers.earlier(key)
        except Exception:
            return None

    # -- held messages ------------------------------------------------------------------------------
    def held_messages(self, *, pids: tuple[str, ...] | None = None) -> list[HeldMessage]:
        """The messages held until their patient is ready, with their reasons (not opened)."""
        return self.held.listing(pids=pids)

    def release_held(self, *, pid: str | None = None) -> list[Released]:
        """Process the held messages again (see `HeldMessages.release`), each read again as it would be
        read now (today's code tables, its sender as the senders file names it now)."""
        return self.held.release(pid=pid, reread=self._reread)

    def release_held_quietly(self, pid: str) -> None:
        """`release_held(pid=…)` after a change that may have fixed a held message's cause (a feed, an
        onboarding, a review resolved; see `wiring.release_held_messages`): the change itself is done and
        answered whatever happens here; a failure is logged and the messages stay held for the command."""
        try:
            for released in self.release_held(pid=pid):
                log.info("held HL7 v2 message %s processed again: %s", released.held_id, released.outcome)
        except Exception:
            log.exception("held HL7 v2 messages of a changed patient could not be processed again")

    def _reread(self, held: HeldMessage) -> IncomingDocument | Unreadable | None:
        sender = self.senders.by_key(held.sender)
        if sender is None:
            return None
        principal = sender.principal(sender.certificate_subject)
        transaction = "HL7v2"
        try:
            message = Message.parse(held.raw)
            code, trigger, _ = message.message_type
            transaction = f"HL7v2 {code}^{trigger}"
            key = MessageKey(sender.key, message.control_id, reading.digest(message))
            return self._document(message, held.raw, sender, principal, key)
        except MessageError as error:
            return Unreadable(principal, transaction, error)


def _answer_for(item: IncomingDocument, outcome: Outcome):
    return acks.answer(item.message, outcome, names_a_document=any(d.relations for d in item.submission.documents))


def _outcome_of(error: Exception, transaction: str) -> Outcome:
    """What an error raised while processing a message means for its answer."""
    if isinstance(error, (MessageError, RecordError, AccessRefused)):
        return Refused(error)
    if is_content_failure(error):
        log.warning("%s: its content could not be processed (%s at %s)", transaction, type(error).__name__,
                    where_raised(error))
        return Refused(error)
    if is_dependency_failure(error):
        log.error("%s could not be processed now: %s (a dependency)", transaction, type(error).__name__)
    else:
        log.exception("%s could not be processed", transaction, exc_info=error)
    return TryAgain(error)
