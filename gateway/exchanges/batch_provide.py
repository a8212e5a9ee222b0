"""The one way documents enter the record: many submissions in one transaction, and one document
alone (ITI-65, a single HL7 v2 message) as a batch of one. Every path that stores a document — ITI-65,
the HL7 v2 bridge, the XDM migration — passes here, so each gets the same decisions, the same
refusals (one error class and text per case, whatever the face), the same sealing and one place
where "documents were stored" is known in the transaction (`record_changes`).

Why batches: one document costs a transaction, a ledger lock and an fsync (bench/README.md). A
migration or an HL7 v2 listener has thousands of submissions waiting; each still gets every step
(patient context, PID look-up, `UploadRules.authorise` with the provide level, idempotency by
uniqueId and SHA-1 — answered with the stored copy only to whom may name it, `UploadRules.may_name`,
else the one refusal `document_batches.uniqueid_in_use` — encryption, one ATC_DOC_CREATE record per
document), but they share one
transaction, one ledger append (one lock, one head read, one multi-row insert) and one commit. Each
submission is all-or-nothing: a refused one is audited (outcome 4, in the same transaction) and
leaves nothing stored, without affecting the others.

Two phases, so a caller with many batches (the migration) can pipeline them: `authorise_many` (the
decisions, the sealing of bodies, metadata and submission sets, the audit records prepared; no
transaction) and `store_authorised` (one transaction: the store's checks, the rows, the prepared
records chained — or prepared afresh for a submission whose outcome differs — the participants,
the caller's `within`, and the commit). `provide_many` is the two in a row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import Connection

from adapters.cara.crypto import Sealed
from adapters.cara.errors import RecordError, UnknownPatient
from adapters.cara.model import DocumentEntry, Submission
from adapters.cara.store.document_batches import BatchItem, ProvideResult, SealedAhead
from adapters.cara.store.documents import DatabaseDocumentStore
from adapters.cara.store.patients import DatabasePatientIndex
from audit.ledger import PreparedRecord
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.exchanges.access import AccessControl
from gateway.exchanges.auditing import Auditor, RequestContext, current_request
from gateway.exchanges.record_changes import RecordChanges, StoredDocument, StoredSubmission
from gateway.exchanges.search_pages import SearchPages
from gateway.exchanges.upload_rules import UploadRules

Within = Callable[[Connection, list["BatchOutcome"]], None]


@dataclass(frozen=True)
class BatchOutcome:
    submission: Submission  # as given
    result: ProvideResult | None  # stored (created) or already present; None when refused
    stored: Submission | None  # the submission as stored (levels raised), None when refused
    error: Exception | None  # why it was refused (a RecordError / AccessRefused); nothing of it stored

    @property
    def created(self) -> bool:
        """At least one document of it was stored by this call (not only found already present)."""
        return self.result is not None and any(d.created for d in self.result.documents)


@dataclass
class AuthorisedBatch:
    """A batch after its decisions (`authorise_many`), before its transaction (`store_authorised`):
    the refused submissions with their audit records, the authorised ones as they will be stored
    (levels raised, provenance set) with their patient, and their bodies already sealed. Only
    `authorise_many` makes one, so nothing reaches the store without its access decision."""

    principal: Principal
    submissions: Sequence[Submission]
    outcomes: list[BatchOutcome | None]
    refusals: list  # AuditRecords of the submissions refused here
    authorised: list[tuple[int, Submission, str]]  # (index in `submissions`, as stored, MPI-PID)
    sealed_bodies: dict[str, Sealed]  # entry id → body sealed under its own data key
    # Prepared ahead too, so that the transaction only checks, chains and inserts: the metadata and
    # submission sets sealed, the refusals' audit records and, per authorised submission (index in
    # `submissions`), the ATC_DOC_CREATE records it gets when every document of it is created.
    sealed: SealedAhead = field(default_factory=lambda: SealedAhead({}, {}))
    prepared_refusals: list[PreparedRecord] = field(default_factory=list)
    prepared_created: dict[int, list[PreparedRecord]] = field(default_factory=dict)
    # The request each submission came with: its trace and address go into the records made for it in
    # the transaction, whichever thread runs it (batches of several requests may be `combined`).
    requests: list[RequestContext] | None = None

    def request_of(self, index: int) -> RequestContext | None:
        return self.requests[index] if self.requests is not None else None

    @property
    def names(self) -> frozenset[tuple[str, str]]:
        """(MPI-PID, uniqueId) of every document authorised here: a later batch of the same principal
        may name them before this one has committed (see `authorise_many`'s `in_flight`)."""
        return frozenset((pid, d.entry.unique_id) for _, stored, pid in self.authorised for d in stored.documents)


def combined(batches: Sequence[AuthorisedBatch]) -> AuthorisedBatch:
    """Batches of one principal authorised apart (concurrent ITI-65 requests) as one, to be stored in
    one transaction; `split` gives each its outcomes back. Each submission keeps its own decisions,
    sealing, prepared records and request context, so each gets the answer and records it would get
    alone (the store decides each against what those before it in the batch accepted, as in any batch)."""
    principal = batches[0].principal
    if any(batch.principal != principal for batch in batches):
        raise ValueError("only the batches of one principal are stored together")
    whole = AuthorisedBatch(principal, [], [], [], [], {}, SealedAhead({}, {}), [], {}, [])
    for batch in batches:
        offset = len(whole.submissions)
        whole.submissions = [*whole.submissions, *batch.submissions]
        whole.outcomes += batch.outcomes
        whole.refusals += batch.refusals
        whole.authorised += [(offset + index, stored, pid) for index, stored, pid in batch.authorised]
        whole.sealed_bodies.update(batch.sealed_bodies)
        whole.sealed.metadata.update(batch.sealed.metadata)
        whole.sealed.submission_sets.update(batch.sealed.submission_sets)
        whole.prepared_refusals += batch.prepared_refusals
        whole.prepared_created.update({offset + index: records for index, records in batch.prepared_created.items()})
        whole.requests += batch.requests or [current_request.get()] * len(batch.submissions)
    return whole


def split(batches: Sequence[AuthorisedBatch], outcomes: list[BatchOutcome]) -> list[list[BatchOutcome]]:
    """The outcomes of `combined(batches)`, batch by batch."""
    parts, offset = [], 0
    for batch in batches:
        parts.append(outcomes[offset:offset + len(batch.submissions)])
        offset += len(batch.submissions)
    return parts


class DocumentProvider:
    """The seam itself; `DocumentExchange` offers it to the faces (audited) as `provide_many`,
    `authorise_many`, `store_authorised`, `provide_submission` and ITI-65's `provide`."""

    def __init__(self, *, rules: UploadRules, documents: DatabaseDocumentStore, patients: DatabasePatientIndex,
                 access: AccessControl, auditor: Auditor, pages: SearchPages, changes: RecordChanges):
        self.rules = rules
        self._documents = documents
        self._patients = patients
        self._access = access
        self._auditor = auditor
        self._pages = pages
        self.changes = changes

    def provide_many(self, *, principal: Principal, submissions: Sequence[Submission], within: Within | None = None,
                     fresh_policies: bool = True) -> list[BatchOutcome]:
        return self.store_authorised(self.authorise_many(principal=principal, submissions=submissions,
                                                         fresh_policies=fresh_policies), within=within)

    def authorise_many(self, *, principal: Principal, submissions: Sequence[Submission],
                       in_flight: frozenset[tuple[str, str]] = frozenset(),
                       fresh_policies: bool = True) -> AuthorisedBatch:
        """Phase 1, no transaction: per submission the patient context, its PID, `UploadRules.authorise`
        (provenance, provide level, write decision, the documents it names), then its bodies sealed.
        `in_flight`: the `names` of this principal's batch being stored meanwhile (a pipelined caller
        decides batch N+1 while batch N commits); the store still checks that such a target was accepted.
        Why sealing here: it is most of a document's CPU and needs no database state, so a pipelined
        caller does it while the previous batch's transaction waits on the disk.
        `fresh_policies`: the decisions use the batch's patients' policies read from the store for this
        batch, not the process's cache (`AccessControl.read_fresh`), for a caller that may run beside
        the gateway in another process (the migration, the bridge). ITI-65 runs in the gateway, whose
        cache follows every policy change (in-process, or Redis across workers), and skips the read."""
        outcomes: list[BatchOutcome | None] = [None] * len(submissions)
        refusals = []  # audit records of submissions refused before the store was asked
        authorised: list[tuple[int, Submission, str]] = []
        earlier: set[tuple[str, str]] = set(in_flight)  # (MPI-PID, uniqueId) authorised above, nameable below
        # SPID → MPI-PID within this batch (one look-up per patient).
        pids = {spid: self._patients.pid_for_spid(spid) for spid in dict.fromkeys(s.spid for s in submissions)}
        consent = contextlib.nullcontext()
        if fresh_policies:  # the consent of these patients and of those merged with them, as stored now
            records = self._patients.records_of([pid for pid in pids.values() if pid is not None])
            consent = self._access.read_fresh([member for members in records.values() for member, _ in members])
        with consent:
            for index, submission in enumerate(submissions):
                try:
                    self._access.require_patient_context(principal, submission.spid)
                    pid = pids[submission.spid]
                    if pid is None:
                        raise UnknownPatient(f"EPR-SPID {submission.spid} is not registered in this community",
                                             location="List.subject.identifier")
                    # `earlier` itself, read during the call (a copy per submission grew with the batch: quadratic)
                    stored = self.rules.authorise(principal, submission, pid, earlier_in_batch=earlier)
                    authorised.append((index, stored, pid))
                    earlier.update((pid, document.entry.unique_id) for document in stored.documents)
                except (RecordError, AccessRefused) as error:
                    outcomes[index] = BatchOutcome(submission, None, None, error)
                    refusals.append(self._auditor.failure_record("ITI-65", principal, error))
        documents, auditor = self._documents, self._auditor
        bodies = {document.entry.entry_id: documents.seal_body(document)
                  for _, stored, _ in authorised for document in stored.documents}
        metadata = {}
        for _, stored, pid in authorised:
            for document in stored.documents:
                sealed_entry = documents.seal_metadata(document, patient_pid=pid,
                                                       submission_set_id=stored.submission_set.submission_set_id)
                if sealed_entry is not None:
                    metadata[document.entry.entry_id] = sealed_entry
        sets = {stored.submission_set.submission_set_id: documents.seal_submission_set(stored, patient_pid=pid)
                for _, stored, pid in authorised}
        created = {index: auditor.prepare_many([_created_record(auditor, principal, stored, stored.documents)])
                   for index, stored, _ in authorised}
        return AuthorisedBatch(principal, submissions, outcomes, refusals, authorised, bodies,
                               SealedAhead(metadata, sets), auditor.prepare_many(refusals), created,
                               [current_request.get()] * len(submissions))

    def store_authorised(self, batch: AuthorisedBatch, *, within: Within | None = None) -> list[BatchOutcome]:
        """Phase 2: one transaction — the store's checks against its state (existing copies, relation
        targets), the rows, one ATC_DOC_CREATE record per created document (and the refusals'), the
        participants told what was stored (`record_changes`), `within`, one commit; then the changed
        patients' search pages are dropped. `within(connection, outcomes)`: the caller's own rows in
        the same transaction (a migration's journal, the bridge's kept answers)."""
        principal, submissions, outcomes = batch.principal, batch.submissions, batch.outcomes
        authorised = batch.authorised
        auditor = self._auditor

        def in_transaction(connection: Connection, results: list) -> None:
            prepared = list(batch.prepared_refusals)
            for (index, stored, _pid), result in zip(authorised, results, strict=True):
                with _request(batch.request_of(index)):
                    prepared += _records_of(index, stored, result)
            auditor.write_prepared(connection, prepared)
            if self.changes.wants_documents:  # (only then: the stored forms cost nothing on the hot path)
                stored_now = [self._stored_submission(principal, outcomes[index], pid)
                              for index, _, pid in authorised if outcomes[index].created]
                if stored_now:
                    self.changes.documents_stored(connection, stored_now)
            if within is not None:
                within(connection, outcomes)  # type: ignore[arg-type]

        def _records_of(index: int, stored: Submission, result) -> list[PreparedRecord]:
            """The submission's outcome, and its records: as prepared ahead, or afresh when the store's
            checks changed what it gets (a document already present, a refusal)."""
            submission = submissions[index]
            if isinstance(result, ProvideResult):
                outcomes[index] = BatchOutcome(submission, result, stored, None)
                created = [d for d, p in zip(stored.documents, result.documents, strict=True) if p.created]
                if len(created) == len(stored.documents) and index in batch.prepared_created:
                    return batch.prepared_created[index]  # as prepared ahead: every document is new
                return auditor.prepare_many([_created_record(auditor, principal, stored, created)])
            outcomes[index] = BatchOutcome(submission, None, None, result)
            return auditor.prepare_many([auditor.failure_record("ITI-65", principal, result,
                                                                patient_spid=stored.spid)])

        def may_reuse(stored: DocumentEntry, pid: str) -> bool:
            # The idempotent answer names the stored entry and confirms its bytes: only to whom may name it.
            return self.rules.may_name(principal, stored, pid=pid)

        self._documents.provide_many([BatchItem(stored, pid) for _, stored, pid in authorised], may_reuse=may_reuse,
                                     within=in_transaction, sealed_bodies=batch.sealed_bodies, sealed=batch.sealed)
        for pid in {pid for index, _, pid in authorised if outcomes[index] is not None and outcomes[index].created}:
            self._pages.documents_changed(pid)
        return outcomes  # type: ignore[return-value]

    def _stored_submission(self, principal: Principal, outcome: BatchOutcome, pid: str) -> StoredSubmission:
        """What a participant is told of a submission that created documents: the entries as the store
        sealed them (relations resolved), with their bytes, filed under the surviving patient."""
        stored, result = outcome.stored, outcome.result
        content = {document.entry.entry_id: document.content for document in stored.documents}
        spid = self._patients.record_of(pid)[0][1] or stored.spid
        return StoredSubmission(principal, spid, replace(stored.submission_set, patient_pid=pid),
                                tuple(StoredDocument(provided.entry, content[provided.entry_id])
                                      for provided in result.documents if provided.created))


@contextlib.contextmanager
def _request(context: RequestContext | None):
    """Records made in a combined batch's transaction carry the request of their own submission."""
    if context is None:
        yield
        return
    token = current_request.set(context)
    try:
        yield
    finally:
        current_request.reset(token)


def _created_record(auditor: Auditor, principal: Principal, stored: Submission, created_documents):
    """The ITI-65 record of a stored submission: ATC_DOC_CREATE naming the documents it created."""
    created = [document.entry for document in created_documents]
    return auditor.record("ITI-65", principal, atc_code="ATC_DOC_CREATE" if created else None,
                          patient_spid=stored.spid, documents=tuple(auditor.document(e) for e in created),
                          submission_set_unique_id=stored.submission_set.unique_id)
