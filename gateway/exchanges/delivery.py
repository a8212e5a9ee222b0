"""Delivering into a community as a use-case (issue 24 items 1-5): the one door the deliverer (a face,
`gateway/delivery/`) and the operator's commands use.

`deliver(*, delivery)` makes one attempt of one outbox row and returns what to record; `record(*,
sent)` records a group of attempts in ONE transaction (each attempt, its row's next state, its ledger
record — ITI-41 with the gateway as source —, the ATNA messages of every exchange it made, queued
durably for the community's repository, and, in forward-only mode, the bytes dropped once every
community holds the document). Between the two nothing is written: a deliverer killed there leaves
the row in flight until its lease expires, and the same submission (same uniqueIds) is sent again,
which the community answers "already delivered".

The decision before anything leaves: the deliverer acts as the community's technical user on behalf
of the community's configured responsible professional (`CommunityTarget.delivering`, purpose AUTO),
decided like any upload of that user at the level it will send (`write`, after the patient's provide
level, on the policies as stored now). What is not sent:
- a document deleted here (CH:MHD-1, DADM) before it was delivered → `withdrawn`, nothing sent;
- a patient without an EPR-SPID or whose EPR is not open here (no onboarding policies) →
  `waiting-patient`, tried again later (sent once the record is open);
- a refusal (the patient's exclusion list names the responsible professional, a secret document with
  a provide level below secret) → `failed` with code `gateway:access-refused` and the reason.
Each of these is recorded in the ledger like an attempt (outcome 4).

The decision is made at the level the record itself files the document at now (its current label,
raised to the patient's provide level here); the level sent is that or, when higher, the level the
community asked for (raised after a consent-filter refusal, never lowered: a higher level is never
less private, so the community's own provide level may exceed the one known here). The metadata sent
is the document's current version (a relabelling before delivery travels with it).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from adapters.cara.errors import ContentForwarded, IntegrityFailure, RecordError
from adapters.cara.model import DocumentEntry, NewDocument, PatientRecord
from adapters.cara.store.documents import DatabaseDocumentStore, DeliveryRead
from adapters.cara.store.outbox import (
    DELIVERED,
    FAILED,
    NOT_SUPPORTED,
    SENDS_DOCUMENT,
    WAITING_PATIENT,
    WITHDRAWN,
    Attempt,
    Backoff,
    DatabaseOutbox,
    Delivery,
    Finish,
    utcnow,
)
from adapters.cara.store.patients import DatabasePatientIndex
from adapters.cara.vocabulary import CONFIDENTIALITY_RANK
from adapters.community.atna import AtnaUnavailable, QueuedAuditMessage
from adapters.community.ebrim import Demographics, OutgoingDocument, OutgoingRelation
from adapters.community.outcomes import TransportFailure
from adapters.community.source import Attempt as SentAttempt
from adapters.community.source import ProvideAnswer, ProvideRequest
from audit.ledger import PreparedRecord
from consent import pdp
from consent.principal import Principal
from gateway.exchanges.access import AccessControl
from gateway.exchanges.auditing import Auditor
from gateway.exchanges.delivery_outcomes import LEDGER_OUTCOME, Retries, finish_of

log = logging.getLogger("epr.delivery")
REFUSED = "gateway:access-refused"
MODES = ("off", "store-and-forward", "forward-only")


class Transport(Protocol):
    """How documents reach one community: `XdsDocumentSource` (SOAP, ITI-41), or an MHD Document
    Recipient (ITI-65). It never raises for what the community or the network does (an outcome says
    it); `send_audit` (optional: a transport without an audit repository has none) raises
    `AtnaUnavailable` when the repository did not take the messages."""

    def provide(self, request: ProvideRequest) -> ProvideAnswer: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CommunityTarget:
    id: str
    transport: Transport
    endpoint: str  # where documents go (the ITI-41 URL): the ledger's destination
    delivering: Principal  # the technical user acting for the community's responsible professional
    transaction: str = "ITI-41"  # what the ledger names each attempt: ITI-41 (XDS.b), ITI-65 (MHD)


@dataclass(frozen=True)
class Sent:
    """One attempt made and decided, not yet recorded (`DeliveryExchange.record`)."""

    finish: Finish
    records: list[PreparedRecord]
    audit: tuple[bytes, ...] = ()  # ATNA messages of the exchanges made, rendered (RFC 5424)

    @property
    def delivery(self) -> Delivery:
        return self.finish.delivery


@dataclass(frozen=True)
class _Ready:
    read: DeliveryRead
    members: tuple  # (MPI-PID, SPID) of the document's record, the surviving patient first
    patient: PatientRecord | None  # the surviving patient (demographics for sourcePatientInfo)
    policies: dict  # MPI-PID → policies, of every member, as stored when claimed


@dataclass(frozen=True)
class AuditDrained:
    sent: int
    error: str | None = None  # the repository did not take them (they stay queued)


@dataclass
class DeliveryExchange:
    outbox: DatabaseOutbox
    documents: DatabaseDocumentStore
    patients: DatabasePatientIndex
    access: AccessControl
    auditor: Auditor
    targets: Mapping[str, CommunityTarget]
    mode: str = "store-and-forward"
    retries: Retries = field(default_factory=lambda: Retries(transport=Backoff(), waiting=Backoff(60.0, 3600.0)))
    clock: Callable[[], datetime] = utcnow
    hostname: str = field(default_factory=socket.gethostname)
    _ready: dict = field(default_factory=dict, repr=False)  # delivery id → what `_read_ahead` read for it
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def communities(self) -> tuple[str, ...]:
        return tuple(self.targets)

    # -- the deliverer --------------------------------------------------------------------------------
    def claim(self, *, owner: str, limit: int, lease_seconds: float) -> list[Delivery]:
        """Due rows under a lease, and what their attempts will send read together (`_read_ahead`)."""
        claimed = self.outbox.claim(owner=owner, limit=limit, lease_seconds=lease_seconds, communities=self.communities)
        self._read_ahead(claimed)
        return claimed

    def release(self, *, deliveries: Sequence[Delivery]) -> int:
        with self._lock:
            for delivery in deliveries:
                self._ready.pop(delivery.id, None)
        return self.outbox.release(deliveries)

    def deliver(self, *, delivery: Delivery) -> Sent:
        """One attempt of `delivery`: decided, built from the stored document, sent; nothing recorded."""
        target = self.targets[delivery.community]
        started = self.clock()
        if delivery.kind not in SENDS_DOCUMENT:
            return self._metadata_change(delivery, target, started)
        ready = self._take(delivery)
        if ready is None:
            return self._not_sent(delivery, target, started, FAILED, "gateway:document-missing",
                                  f"document {delivery.entry_id} is not in the record", None)
        entry, members = ready.read.entry, ready.members
        if entry.status == "deleted":
            return self._not_sent(delivery, target, started, WITHDRAWN, "deleted",
                                  f"deleted in this record (version {entry.version}) before it was delivered: "
                                  "nothing sent", entry)
        spid, owner_spid = members[0][1], dict(members).get(entry.patient_pid)
        if spid is None or owner_spid is None:
            return self._waiting(delivery, target, started, "the patient has no EPR-SPID here", entry, spid)
        with self.access.decided_on(ready.policies):  # as stored when the batch was claimed
            policies = self.access.owner_policies(spid=owner_spid, pid=entry.patient_pid, group=members)
            own_level = _highest(entry.confidentiality_level, pdp.provide_level(policies))
            decision = self.access.decide(target.delivering, spid=owner_spid, pid=entry.patient_pid, action="write",
                                          confidentiality=own_level, group=members)
        if not policies:
            return self._waiting(delivery, target, started, "the patient's EPR is not open here (no onboarding "
                                 "policies): sent once it is", entry, spid)
        if not decision.permit:
            return self._not_sent(delivery, target, started, FAILED, REFUSED, decision.reason, entry, spid, own_level)
        # Decided at the level the record itself files it; the community's consent filter may only raise it.
        level = _highest(own_level, delivery.confidentiality)
        content, submission_set = ready.read.content, ready.read.submission_set
        if submission_set is None:
            content = IntegrityFailure(f"the submission set of document {entry.entry_id} is missing from the record")
        if isinstance(content, RecordError):  # dropped after an earlier delivery (forward-only), or failing its hash
            code = "gateway:content-forwarded" if isinstance(content, ContentForwarded) else "gateway:integrity-failure"
            return self._not_sent(delivery, target, started, FAILED, code, content.message, entry, spid, level)
        request = self._request(delivery, entry, spid, level, content, submission_set, ready.patient)
        try:
            answer = target.transport.provide(request)
        except Exception as error:  # noqa: BLE001 - a transport's bug: nothing known, the same submission later
            log.exception("delivery %s to %s: the transport failed", delivery.id, delivery.community)
            answer = ProvideAnswer(TransportFailure(f"the gateway's transport failed: {type(error).__name__}"),
                                   SentAttempt(delivery.submission_set_unique_id, (delivery.entry_uuid,), level,
                                               None, None), ())
        finish = finish_of(delivery, answer, started=started, now=self.clock(), version=entry.version,
                           retries=self.retries)
        record = self._record(target, finish, spid, entry)
        return Sent(finish, record, tuple(m.syslog(self.hostname) for m in answer.audit))

    def record(self, *, sent: Sequence[Sent]) -> list[bool]:
        """Every attempt of `sent`, in one transaction: attempts, states, ledger records, ATNA messages,
        forward-only drops. Returns whether each row was still held by its claim."""
        prepared = [record for one in sent for record in one.records]

        def within(connection, held: list[bool]) -> None:
            self.auditor.write_prepared(connection, prepared)
            for one in sent:
                self.outbox.queue_audit(connection, one.delivery.community, one.audit)
            if self.mode == "forward-only":
                for one, still_held in zip(sent, held, strict=True):
                    self._drop_when_everywhere(connection, one, still_held)

        return self.outbox.finish_many([one.finish for one in sent], within=within)

    # -- the community's audit record repository --------------------------------------------------------
    def send_queued_audit(self, *, community: str, owner: str, limit: int = 200) -> AuditDrained:
        """Send the oldest unsent ATNA messages of `community` to its repository; marked sent only once it
        took them. A transport without a repository has none queued (nothing to send)."""
        send = getattr(self.targets[community].transport, "send_audit", None)
        if send is None:
            return AuditDrained(0)
        batch = self.outbox.claim_audit(community=community, owner=owner, limit=limit)
        if not batch:
            return AuditDrained(0)
        ids = [message_id for message_id, _ in batch]
        try:
            send([QueuedAuditMessage(bytes(message)) for _, message in batch])
        except AtnaUnavailable as unavailable:
            self.outbox.audit_not_sent(ids, str(unavailable))
            return AuditDrained(0, str(unavailable))
        self.outbox.audit_sent(ids)
        return AuditDrained(len(ids))

    # -- the operator ---------------------------------------------------------------------------------
    def status(self):
        return self.outbox.counts(), self.outbox.unsent_audit_count()

    def show(self, *, unique_id: str):
        return self.outbox.find(unique_id)

    def retry(self, *, unique_ids: Sequence[str] = (), failed: bool = False) -> int:
        return self.outbox.retry(unique_ids=unique_ids, failed=failed)

    def states(self, *, unique_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        return self.outbox.states_of_unique_ids(unique_ids)

    def close(self) -> None:
        for target in self.targets.values():
            target.transport.close()

    # -- pieces ---------------------------------------------------------------------------------------
    def _read_ahead(self, claimed: Sequence[Delivery]) -> None:
        """For a claimed batch, together: the entries, bytes and submission sets (`for_delivery`), the
        patients of their records and those patients' policies as stored now — a few queries per batch
        instead of several per document. Each sender takes its own (`_take`)."""
        sending = [d for d in claimed if d.kind in SENDS_DOCUMENT]
        if not sending:
            return
        reads = self.documents.for_delivery([d.entry_id for d in sending])
        records = {pid: self.patients.record_of(pid) for pid in {r.entry.patient_pid for r in reads.values()}}
        pids = list(dict.fromkeys(pid for members in records.values() for pid, _ in members))
        patients = {record.pid: record for record in self.patients.get_many(pids)}
        policies = self.access.store.policies_for_many(pids)
        with self._lock:
            for delivery in sending:
                read = reads.get(delivery.entry_id)
                if read is not None:
                    members = records[read.entry.patient_pid]
                    self._ready[delivery.id] = _Ready(read, members, patients.get(members[0][0]),
                                                      {pid: policies[pid] for pid, _ in members})

    def _take(self, delivery: Delivery) -> _Ready | None:
        with self._lock:
            ready = self._ready.pop(delivery.id, None)
        if ready is None:  # not claimed here (a caller of `deliver` alone): read now
            self._read_ahead([delivery])
            with self._lock:
                ready = self._ready.pop(delivery.id, None)
        return ready

    def _request(self, delivery: Delivery, entry: DocumentEntry, spid: str, level: str, content: bytes,
                 submission_set, patient) -> ProvideRequest:
        relations = []
        others = [r.target_entry_id for r in entry.relations if r.code != "replaces"]
        held = self.outbox.delivered_entry_uuids(delivery.community, others) if others else {}
        # Where the community names documents by ids of its own (MHD), the original's as its answer gave it.
        references = (delivery.original_receipt or {}).get("locations") or {}
        for relation in entry.relations:
            target = delivery.original_entry_uuid if relation.code == "replaces" else held.get(relation.target_entry_id)
            if target is not None:  # a target the community does not hold is not named there
                relations.append(OutgoingRelation(relation.code, target, references.get(target)))
        demographics = Demographics(patient.family, patient.given, patient.birth_date, patient.gender) if patient \
            else Demographics()
        return ProvideRequest(spid=spid, submission_set=submission_set,
                              submission_set_unique_id=delivery.submission_set_unique_id,
                              submission_set_entry_uuid=delivery.submission_set_uuid,
                              documents=(OutgoingDocument(NewDocument(entry, content), delivery.entry_uuid,
                                                          tuple(relations)),),
                              confidentiality=level, submission_time=delivery.created_at.replace(tzinfo=UTC),
                              demographics=demographics)

    def _metadata_change(self, delivery: Delivery, target: CommunityTarget, started: datetime) -> Sent:
        """An `update`/`delete` row: no transport here changes a community's metadata (cara's XDS.b
        Document Source provides only), so it is settled without sending — the community already holds
        this version when the document itself went after the change; never reached it (withdrawn
        original); or the change is not supported there, saying what the operator does."""
        entry = self.documents.get_entry(delivery.entry_id)
        sent_version = (delivery.original_receipt or {}).get("version", 0)
        if delivery.original_state in (None, WITHDRAWN):
            return self._not_sent(delivery, target, started, WITHDRAWN, "not-delivered",
                                  "the document never reached the community: nothing to change there", entry)
        if sent_version >= delivery.version:
            finish = Finish(delivery, Attempt("delivered", started, self.clock(), delivery.confidentiality,
                                              text=f"the community received version {sent_version} with the document"),
                            DELIVERED, receipt={"outcome": "carried", "version": sent_version,
                                                "carried_by": delivery.depends_on})
            return Sent(finish, [])
        what = ("deleted here by a document administrator" if delivery.kind == "delete"
                else f"its metadata changed here (version {delivery.version})")
        return self._not_sent(
            delivery, target, started, NOT_SUPPORTED, "not-supported",
            f"document {delivery.unique_id} was {what}; {delivery.community} takes provides only from this "
            f"gateway's technical user: the community's document administrator (or the patient, for the "
            f"confidentiality) changes it there (entryUUID {delivery.original_entry_uuid})", entry)

    def _waiting(self, delivery, target, started, text, entry, spid) -> Sent:
        retry_at = self.clock() + self.retries.waiting.delay(delivery.attempts)
        return self._not_sent(delivery, target, started, WAITING_PATIENT, "gateway:record-not-open", text, entry, spid,
                              retry_at=retry_at)

    def _not_sent(self, delivery: Delivery, target: CommunityTarget, started: datetime, state: str, code: str,
                  text: str, entry: DocumentEntry | None, spid: str | None = None, level: str | None = None,
                  retry_at: datetime | None = None) -> Sent:
        outcome = {WITHDRAWN: "withdrawn", NOT_SUPPORTED: "not-supported", WAITING_PATIENT: "waiting-patient"}.get(
            state, "refused")
        attempt = Attempt(outcome, started, self.clock(), level or delivery.confidentiality, code=code, text=text)
        finish = Finish(delivery, attempt, state, retry_at=retry_at)
        return Sent(finish, self._record(target, finish, spid, entry))

    def _record(self, target: CommunityTarget, finish: Finish, spid: str | None,
                entry: DocumentEntry | None) -> list[PreparedRecord]:
        attempt, delivery = finish.attempt, finish.delivery
        outcome = LEDGER_OUTCOME.get(attempt.outcome, "4")
        described = " ".join(part for part in (attempt.outcome, attempt.code, attempt.text) if part)
        record = self.auditor.record(
            target.transaction, target.delivering, outcome=outcome,
            outcome_description=described[:500] if outcome != "0" else None,
            patient_spid=spid, documents=(self.auditor.document(entry),) if entry else (),
            submission_set_unique_id=f"urn:oid:{delivery.submission_set_unique_id}", server_address=target.endpoint,
            destination=target.id)
        return self.auditor.prepare_many([record])

    def _drop_when_everywhere(self, connection, sent: Sent, held: bool) -> None:
        """Forward-only: the bytes go once every community holds the document (its metadata and the
        receipts stay; ITI-68 then answers 410 naming the communities)."""
        delivery = sent.delivery
        if not held or sent.finish.state != DELIVERED or delivery.kind not in SENDS_DOCUMENT:
            return
        if self.outbox.undelivered_copies(connection, delivery.entry_id, besides=delivery.id) == 0:
            self.documents.drop_content(connection, delivery.entry_id, communities=",".join(self.communities),
                                        now=self.clock())


def _highest(*levels: str) -> str:
    return max(levels, key=CONFIDENTIALITY_RANK.__getitem__)
