"""Document messages (MDM, ORU) into the record, a batch at a time: the HL7 v2 bridge's group commit.

Per batch: one look-up of the answers kept for its messages (the same message again gets its first
answer), its patients checked together by the one rule (`patient_readiness`), then one `provide_many`
per sender whose transaction also keeps the answers, so that an AA leaves only once the document, its
audit record and its answer are durable. A message whose patient is not ready is held (its answer
kept with it); one whose patient is unknown is refused; refusals are audited and answered together.

Nothing lost at the bridge: a member's content never fails its neighbours. When a step fails for the
whole batch, a dependency failure (store, ledger) answers every member "try again" (not kept); any
other failure is looked for member by member — each is stored on its own, and the one whose content
cannot be taken is refused alone (AE, kept, audited). What the answers say is the face's business
(`answer_for`, its one table); this module decides which outcome each message has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from adapters.cara.errors import UnknownPatient
from adapters.cara.model import Submission
from gateway.exchanges.auditing import Auditor
from gateway.exchanges.documents import DocumentExchange
from gateway.exchanges.failures import is_content_failure, is_dependency_failure, where_raised
from gateway.exchanges.held_messages import HeldMessages
from gateway.exchanges.message_answers import Answer, MessageAnswers, MessageKey
from gateway.exchanges.message_outcomes import STORED, Held, IncomingDocument, Outcome, Refused, TryAgain, Unready
from gateway.exchanges.patient_readiness import UNKNOWN_PATIENT, PatientReadiness, Readiness

log = logging.getLogger("epr.mllp")
AnswerFor = Callable[[IncomingDocument, Outcome], Answer]
Group = list[tuple[IncomingDocument, Submission]]


class DocumentMessages:
    def __init__(self, *, exchange: DocumentExchange, readiness: PatientReadiness, held: HeldMessages,
                 answers: MessageAnswers, auditor: Auditor):
        self._exchange = exchange
        self._readiness = readiness
        self._held = held
        self._answers = answers
        self._auditor = auditor

    def commit(self, items: list[IncomingDocument], *, answer_for: AnswerFor) -> list[bytes]:
        """The ACK of each item, in order (a copy of a message in the same batch gets the first's)."""
        firsts: dict[MessageKey, IncomingDocument] = {}
        for item in items:
            firsts.setdefault(item.key, item)
        acks: dict[MessageKey, bytes] = {}
        try:
            acks.update(self._answers.earlier_many(list(firsts)))
            refused: list[tuple[IncomingDocument, Outcome]] = []
            groups: dict[tuple, Group] = {}
            for item, readiness in self._readiness_of([i for k, i in firsts.items() if k not in acks], acks,
                                                      refused, answer_for):
                if readiness.ready:
                    groups.setdefault((item.key.sender, item.principal.client_certificate), []).append(
                        (item, replace(item.submission, spid=readiness.spid)))
                elif readiness.hold == UNKNOWN_PATIENT:
                    refused.append((item, Unready(readiness)))
                else:
                    self._hold(item, readiness, acks, refused, answer_for)
            for group in groups.values():
                self._store(group, acks, refused, answer_for)
            self._refuse(refused, acks, answer_for)
        except Exception as error:  # the last guard: whatever is not answered yet may be sent again
            log.exception("a batch of %d HL7 v2 documents could not be processed", len(firsts))
            for key, item in firsts.items():
                acks.setdefault(key, answer_for(item, TryAgain(error)).ack)
        return [acks[item.key] for item in items]

    # -- the steps, each answering its members on its own ----------------------------------------------
    def _readiness_of(self, items: list[IncomingDocument], acks, refused, answer_for):
        """(item, readiness) of each item whose patient could be checked; the others answered."""
        try:
            checked = self._readiness.check_many([item.claim for item in items])
            return [(item, checked[item.claim]) for item in items]
        except Exception as error:
            if is_dependency_failure(error) or len(items) == 1:
                self._failed(items, error, acks, refused, answer_for, "checked")
                return []
        found = []
        for item in items:  # one member's claim failed the batch's check: each on its own
            try:
                found.append((item, self._readiness.check_many([item.claim])[item.claim]))
            except Exception as error:
                self._failed([item], error, acks, refused, answer_for, "checked")
        return found

    def _hold(self, item: IncomingDocument, readiness: Readiness, acks, refused, answer_for) -> None:
        try:
            acks[item.key] = self._held.hold(item, readiness, answer_for(item, Held(readiness)))
        except Exception as error:
            self._failed([item], error, acks, refused, answer_for, "held")

    def _store(self, group: Group, acks, refused, answer_for) -> None:
        try:
            acks.update(self._provide(group, answer_for))
            return
        except Exception as error:
            if is_dependency_failure(error) or len(group) == 1:
                self._failed([item for item, _ in group], error, acks, refused, answer_for, "stored")
                return
            log.warning("a batch of %d HL7 v2 documents failed (%s at %s): each is stored on its own", len(group),
                        type(error).__name__, where_raised(error))
        for index, member in enumerate(group):
            try:
                acks.update(self._provide([member], answer_for))
            except Exception as error:
                self._failed([member[0]], error, acks, refused, answer_for, "stored")
                if is_dependency_failure(error):  # the others would fail the same way: try again later
                    self._failed([item for item, _ in group[index + 1:]], error, acks, refused, answer_for, "stored")
                    return

    def _provide(self, group: Group, answer_for) -> dict[MessageKey, bytes]:
        """One `provide_many` for the group, its answers kept in its transaction."""
        # Written before the transaction (sent only after its commit): the answer when stored.
        stored = {item.key: answer_for(item, STORED) for item, _ in group}
        answers: dict[MessageKey, Answer] = {}
        earlier: dict[MessageKey, bytes] = {}

        def within(connection, outcomes) -> None:
            # A copy answered by a concurrent batch (another process) keeps that answer.
            earlier.update(self._answers.earlier_in(connection, [item.key for item, _ in group]))
            for (item, _), outcome in zip(group, outcomes, strict=True):
                answers[item.key] = (stored[item.key] if outcome.error is None
                                     else answer_for(item, Refused(outcome.error)))
            self._answers.keep_in(connection, [(k, a) for k, a in answers.items() if k not in earlier])

        self._exchange.provide_many(principal=group[0][0].principal, submissions=[s for _, s in group], within=within)
        return {key: earlier.get(key, answer.ack) for key, answer in answers.items()}

    def _refuse(self, refused: list[tuple[IncomingDocument, Outcome]], acks, answer_for) -> None:
        """The refusals found in the batch: audited and their answers kept, in one transaction (each
        alone when that fails: the one that cannot be kept is answered without being kept)."""
        pending = [(item, outcome) for item, outcome in refused if item.key not in acks]
        if not pending:
            return
        try:
            acks.update(self._refuse_together(pending, answer_for))
        except Exception as error:
            if is_dependency_failure(error) or len(pending) == 1:
                for item, outcome in pending:
                    acks[item.key] = (answer_for(item, TryAgain(error)) if is_dependency_failure(error)
                                      else replace(answer_for(item, outcome), kept=False)).ack
                return
            for one in pending:
                self._refuse([one], acks, answer_for)

    def _refuse_together(self, refused, answer_for) -> dict[MessageKey, bytes]:
        answers = {item.key: (item, answer_for(item, outcome)) for item, outcome in refused}
        with self._auditor.engine.begin() as connection:
            earlier = self._answers.earlier_in(connection, list(answers))
            self._auditor.write(connection, [
                self._auditor.failure_record(item.transaction, item.principal, _audited_as(answer, item))
                for key, (item, answer) in answers.items() if key not in earlier])
            self._answers.keep_in(connection, [(key, answer) for key, (_, answer) in answers.items()
                                               if key not in earlier])
        return {key: earlier.get(key, answer.ack) for key, (_, answer) in answers.items()}

    def _failed(self, items: list[IncomingDocument], error: Exception, acks, refused, answer_for, step: str) -> None:
        """Items a step failed for: the item's own refusal when its content is the cause (it failed
        alone), else "try again" (a dependency, or the gateway's own fault: logged)."""
        if len(items) == 1 and is_content_failure(error):
            log.warning("an HL7 v2 document could not be %s: its content (%s at %s)", step, type(error).__name__,
                        where_raised(error))
            refused.append((items[0], Refused(error)))
            return
        if is_dependency_failure(error):
            log.error("%d HL7 v2 documents could not be %s: %s (a dependency)", len(items), step, type(error).__name__)
        else:
            log.exception("%d HL7 v2 documents could not be %s", len(items), step, exc_info=error)
        for item in items:
            acks[item.key] = answer_for(item, TryAgain(error)).ack


def _audited_as(answer: Answer, item: IncomingDocument) -> Exception:
    """What the refusal's audit record says: what the sender was told."""
    return answer.refusal or UnknownPatient(f"{item.transaction} refused", location="PID-3")
