"""`epr-gateway migrate`: every document of XDM media through the use-case layer, in batches.

The flow, per source document in a stable order (media as given, subsets sorted, documents in
metadata order):
  read + map (reader processes, `reading.py`: file I/O, SHA-1, XML) → a batch → its patients
  (`ImportExchange.patients_for_import`, together)
  → relation targets (entryUUID → uniqueId, across packages and runs, in order)
  → `DocumentExchange.provide_many` as the TCU acting for `--as-gln`, whose transaction also journals every
  document of the batch (stored, already present, held with its sealed copy, rejected).
Because the journal commits with the documents, a run killed at any point and started again skips
exactly what was committed and ends in the state of an uninterrupted run. Decisions that depend on
earlier documents (relation targets) are taken in order in this process; reader processes only read.
On PostgreSQL several of these jobs run at once, one per writer process, each on its share of the
patients (`writers.py`); what one of them cannot decide alone (a target in another's share) is deferred
to the parent, which decides it at the end in the run's order (`run_deferred`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from adapters.cara.errors import Conflict, RecordError, UnknownPatient, UnknownRelationTarget
from adapters.cara.model import Submission
from adapters.infomed.xdm import ebrim
from adapters.infomed.xdm.codes import CodeTables
from adapters.infomed.xdm.mapping import MappedDocument, with_relations
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.exchanges.documents import DocumentExchange
from gateway.exchanges.failures import is_content_failure, is_dependency_failure
from gateway.exchanges.imports import ImportExchange, PatientRequest
from gateway.exchanges.media_refusals import MediaRefusal, record_refusals
from gateway.migration.collector import collector_held_back
from gateway.migration.journal import Journal, JournalRow
from gateway.migration.reading import HeldSource, Prepared, Share, described, map_prepared, prepared_documents

MAX_BATCH_BYTES = 64 * 1024 * 1024  # a batch's documents are in memory together
RELATION_TARGET = "relation-target"
PATIENTS_CACHED = 100_000
# What stops a run (to be started again once the dependency is back): the database, the ledger, the
# cache or the MPI's link versions unreachable. Anything else raised while a batch is decided or
# stored is taken to be about a document of it: the batch is split until that document is found,
# and it alone is rejected with the error.
# What a failure means is one rule for every batch caller (the bridge's group commit too): a dependency
# failed (store, ledger, Redis, keys) — the run stops and the same command resumes it; one document's
# content could not be taken — that document is rejected, naming why; anything else is the gateway's own
# fault — the document is held (its sealed copy kept: `migrate retry` takes it once the fault is fixed).
log = logging.getLogger("epr.migration")


def migration_principal(gln: str, *, user_id: str = "infomed-migration") -> Principal:
    """The technical user (TCU, purpose AUTO) on behalf of the responsible professional."""
    return Principal(role="TCU", user_id=user_id, name="Infomed migration", purpose_of_use="AUTO", acting_for=gln)


@dataclass
class Counts:
    documents: int = 0
    bytes: int = 0
    skipped: int = 0  # already journaled by an earlier (interrupted) run
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: dict[tuple[str, str], int] = field(default_factory=dict)  # (held|rejected, reason code) → count

    def merged(self, other: Counts) -> Counts:
        """These counts and `other`'s together (several writers' into one run's)."""
        return Counts(self.documents + other.documents, self.bytes + other.bytes, self.skipped + other.skipped,
                      _summed(self.outcomes, other.outcomes), _summed(self.reasons, other.reasons))

    def add(self, row: JournalRow, size: int) -> None:
        self.documents += 1
        self.bytes += size
        self.outcomes[row.outcome] = self.outcomes.get(row.outcome, 0) + 1
        if row.outcome in ("held", "rejected"):
            key = (row.outcome, row.reason_code or "other")
            self.reasons[key] = self.reasons.get(key, 0) + 1


class MigrationJob:
    def __init__(self, *, exchange: DocumentExchange, imports: ImportExchange, journal: Journal, tables: CodeTables,
                 principal: Principal, batch: int = 200, workers: int = 2, dry_run: bool = False,
                 on_progress: Callable[[Counts], None] | None = None, share: Share | None = None,
                 defer: Callable[[Prepared], None] | None = None):
        """`share` and `defer`: one of several writer processes (`writers.py`): only its share is read, and
        a document naming a relation target this writer has not seen is handed to `defer` (the parent
        decides it once every writer is done) instead of being held."""
        if batch < 1 or workers < 0:
            raise ValueError("batch must be at least 1, workers at least 0 (0: read in this process)")
        self.exchange = exchange
        self.imports = imports
        self.journal = journal
        self.tables = tables
        self.principal = principal
        self.batch = batch
        self.workers = workers
        self.dry_run = dry_run
        self.share = share
        self.defer = defer
        self.on_progress = on_progress or (lambda counts: None)
        self.counts = Counts()
        self.dry_rows: list[JournalRow] = []
        self._targets: dict[str, str] = {}  # entryUUID → uniqueId, stored or on its way in this run
        self._positions: dict[str, tuple[int, int]] = {}  # entryUUID → its place, for those of this run
        self._pending: list[Prepared] = []
        self._pending_bytes = 0
        self._pending_submissions = 0
        self._in_flight: concurrent.futures.Future | None = None  # the batch the writer thread is storing
        self._in_flight_pending: list[Prepared] = []  # its documents (split and stored again if it fails)
        self._in_flight_names: frozenset[tuple[str, str]] = frozenset()
        self._patients: dict = {}  # PatientRequest → ImportPatient, for this run

    # -- the run ------------------------------------------------------------------------------------
    def run(self, sources: list[Path], *, earlier_targets: dict[str, str] | None = None) -> None:
        """`earlier_targets`: a writer of several is given the targets stored before the run started (read
        once by the parent): read here, they could include what another writer of this run has just
        stored, which this writer would then take for an earlier run's, whatever its place in the run."""
        done = self.journal.rows_for(source_names(sources))
        self._targets = dict(earlier_targets) if earlier_targets is not None else self.journal.stored_targets()
        with collector_held_back(), self._writing():
            for prepared in prepared_documents(sources, self.tables, self.workers, self.share):
                if prepared.row.source in done:
                    self.counts.skipped += 1
                    continue
                self._add(prepared)
            self._flush()

    def run_deferred(self, deferred: list[Prepared], targets: dict[str, tuple[str, tuple[int, int] | None]], *,
                     earlier_targets: dict[str, str]) -> None:
        """What several writers deferred, in the run's order, once all of them are done: `targets` (every
        writer's `targets_of_this_run`) are seen by a document only if they come before it in the run
        (`_with_targets`), so each is decided as one writer would have decided it; `earlier_targets`
        (stored before the run) by every one."""
        self._targets = dict(earlier_targets)
        for entry_uuid, (unique_id, position) in targets.items():
            self._targets[entry_uuid] = unique_id
            if position is not None:
                self._positions[entry_uuid] = position
        with collector_held_back(), self._writing():
            for prepared in sorted(deferred, key=lambda p: p.position):
                self._add(prepared)
            self._flush()

    def targets_of_this_run(self) -> dict[str, tuple[str, tuple[int, int] | None]]:
        """entryUUID → (uniqueId, place in the run) of the documents this run put in the record."""
        return {uuid: (self._targets[uuid], position) for uuid, position in self._positions.items()
                if uuid in self._targets}

    def retry(self) -> None:
        """Held documents again: mapped with today's tables, patient and targets resolved again."""
        self._targets = self.journal.stored_targets()
        with collector_held_back(), self._writing():
            self._retry_held()

    def _retry_held(self) -> None:
        for held in self.journal.held():
            payload = held.payload
            media = held.source.split("/", 1)[0]
            source = HeldSource(None, payload["document"]["id"], payload["content"], payload)
            try:
                document = ebrim.RegistryObject.from_json(payload["document"])
                subset = ebrim.RegistryObject.from_json(payload["submission_set"]) if payload["submission_set"] \
                    else None
                associations = [ebrim.Association(**a) for a in payload["associations"]]
                prepared = map_prepared(held.source, media, document, subset, associations, payload["content"],
                                        self.tables, source)
            except Exception as error:  # noqa: BLE001 - this document stays held (its copy kept), the rest go on
                log.exception("retrying %s failed", held.source)
                ids = payload["document"].get("external_ids") or {}
                prepared = Prepared(JournalRow(held.source, media, "held", unique_id=ids.get(ebrim.DOCUMENT_UNIQUE_ID),
                                               entry_uuid=payload["document"].get("id"), reason_code="error",
                                               reason=f"could not be mapped again: {described(error)}"),
                                    len(payload["content"]), held=source)
            self._add(prepared)
        self._flush()

    @contextlib.contextmanager
    def _writing(self):
        """The writer thread: batch N is stored (its transaction, commit and fsync) while this thread
        reads, resolves and authorises batch N+1. One batch in flight at a time, committed in order; the
        run returns (or raises) only once the last one has committed or failed."""
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="migration-writer")
        try:
            yield
            self._wait_for_writer()
        finally:
            try:
                self._wait_for_writer()
            finally:
                self._writer.shutdown(wait=True)

    # -- in order (main thread) ---------------------------------------------------------------------------
    def _resolved(self, pending: list[Prepared]) -> list[Prepared]:
        """The batch's documents in order, each with its patient's SPID (or held with the reason) and
        its relation targets. The batch's new patients are looked up together, once per patient and
        demographics per run (an export has many documents per patient); the consent decision is
        still made per submission. Targets are resolved in order: a document may name one before it."""
        needed = list(dict.fromkeys(_patient_request(p.mapped) for p in pending if p.mapped is not None))
        wanted = [request for request in needed if request not in self._patients]
        if len(self._patients) + len(wanted) > PATIENTS_CACHED:
            self._patients.clear()
            wanted = needed
        if wanted:
            self._look_up(wanted)
        resolved = []
        for prepared in pending:
            decided = self._with_targets(self._with_patient(prepared))
            if decided is None:  # a target another writer may have: the parent decides it at the end
                self.defer(prepared)
            else:
                resolved.append(decided)
        return resolved

    def _look_up(self, wanted: list[PatientRequest]) -> None:
        """The patients of `wanted` together; if the look-up raises for what one of them holds, each on
        its own, and that one's documents are rejected with the error (the others go on)."""
        try:
            self._patients.update(self.imports.patients_for_import(principal=self.principal, requests=wanted))
        except Exception as error:  # noqa: BLE001 - a dependency stops the run; else one patient's: found below
            if is_dependency_failure(error):
                raise
            if len(wanted) > 1:
                for request in wanted:
                    self._look_up([request])
                return
            log.warning("the patient of a document could not be looked up: %s", described(error))
            self._patients[wanted[0]] = error

    def _with_patient(self, prepared: Prepared) -> Prepared:
        """The document's local patient id → its SPID through the MPI (looked up by `_resolved`), or held."""
        if prepared.mapped is None:
            return prepared
        patient = self._patients[_patient_request(prepared.mapped)]
        if isinstance(patient, Exception):
            return replace(prepared, mapped=None, row=replace(
                prepared.row, outcome="rejected", reason_code="error",
                reason=f"its patient could not be looked up: {described(patient)}"))
        if patient.spid is None:
            return replace(prepared, mapped=None,
                           row=replace(prepared.row, reason_code=patient.hold_code, reason=patient.reason))
        return replace(prepared, spid=patient.spid)

    def _with_targets(self, prepared: Prepared) -> Prepared | None:
        """Its relation targets as uniqueIds, or held; None: deferred (a writer of several, `defer`)."""
        mapped = prepared.mapped
        if mapped is None:
            return prepared
        if not mapped.relation_targets and prepared.row.replaces is None and not mapped.document.relations:
            # Most documents name none: kept as they are (each copy of these dataclasses costs the writer).
            self._remember_target(mapped, prepared.position)
            return prepared
        resolved, replaces = [], None
        for code, target_uuid in mapped.relation_targets:
            target = self._targets.get(target_uuid)
            place = self._positions.get(target_uuid)
            if place is not None and prepared.position is not None and place > prepared.position:
                target = None  # a later document of the run (another writer's): one writer had not seen it
            if target is None and self.defer is not None:
                return None
            if target is None:
                return replace(prepared, mapped=None, row=replace(
                    prepared.row, reason_code=RELATION_TARGET,
                    reason=f"the {code} target {target_uuid} is not (yet) in the record"))
            resolved.append((code, target))
            replaces = target if code == "replaces" else replaces
        document = with_relations(mapped, resolved)
        self._remember_target(mapped, prepared.position)
        return replace(prepared, mapped=replace(mapped, document=document),
                       row=replace(prepared.row, replaces=replaces))

    def _remember_target(self, mapped: MappedDocument, position: tuple[int, int] | None) -> None:
        self._targets[mapped.entry_uuid] = mapped.unique_id  # later documents may name it
        if position is not None:
            self._positions[mapped.entry_uuid] = position

    def _add(self, prepared: Prepared) -> None:
        self._pending.append(prepared)
        self._pending_bytes += prepared.size
        self._pending_submissions += prepared.mapped is not None
        if self._pending_submissions >= self.batch or self._pending_bytes >= MAX_BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending, self._pending_bytes, self._pending_submissions = self._pending, [], 0, 0
        if not pending:
            return
        pending = self._resolved(pending)
        if self.dry_run:
            rows = [p.row if p.mapped is None else replace(p.row, outcome="migrated", reason="dry run: not stored")
                    for p in pending]
            record_refusals(auditor=self.exchange.auditor, principal=self.principal, refusals=_refusals(pending))
            self.dry_rows.extend(rows)
            self._count(pending, rows)
            return
        # Decided here while the writer thread still stores the previous batch, whose documents this
        # batch may name (`in_flight`); then stored in order, one batch in flight.
        try:
            authorised = self.exchange.authorise_many(principal=self.principal, submissions=_submissions(pending),
                                                      in_flight=self._in_flight_names)
        except Exception as error:  # noqa: BLE001 - a dependency stops the run; else a document's: `_store_in_parts`
            if is_dependency_failure(error):
                raise
            self._wait_for_writer()
            self._store_in_parts(pending)
            return
        self._wait_for_writer()
        self._in_flight_names = authorised.names
        self._in_flight_pending = pending
        self._in_flight = self._writer.submit(self._store, pending, authorised)

    def _store(self, pending: list[Prepared], authorised) -> tuple[list[Prepared], list[JournalRow]]:
        """On the writer thread: the batch's transaction, which also journals it and audits the
        security refusals among its rows."""
        decided: list[JournalRow] = []

        def journal_in_transaction(connection, outcomes) -> None:
            by_index = iter(outcomes)
            rows, held = [], []
            for p in pending:
                row = p.row if p.mapped is None else _outcome_row(p.row, next(by_index))
                rows.append(row)
                if row.outcome == "held" and p.held is not None:
                    held.append((row, p.payload))
            self.journal.record(connection, rows, held)
            record_refusals(auditor=self.exchange.auditor, principal=self.principal, refusals=_refusals(pending),
                            connection=connection)
            decided[:] = rows

        self.exchange.store_authorised(principal=self.principal, batch=authorised, within=journal_in_transaction)
        return pending, decided

    def _store_in_parts(self, pending: list[Prepared]) -> None:
        """`pending` decided and stored now, in this thread (the writer is idle); if that raises for
        anything but a dependency, each half of it the same way, down to the one document that cannot
        be stored, which is rejected with the error. Halves keep the order: a document naming one
        before it finds it stored. Costs a few transactions more, only for a batch that failed."""
        submitted = [i for i, p in enumerate(pending) if p.mapped is not None]
        try:
            authorised = self.exchange.authorise_many(principal=self.principal, submissions=_submissions(pending))
            self._committed(*self._store(pending, authorised))
            return
        except Exception as error:  # noqa: BLE001 - split below; with no document of its own, not content
            if is_dependency_failure(error) or not submitted:
                raise
            if len(submitted) > 1:
                middle = submitted[len(submitted) // 2]
                self._store_in_parts(pending[:middle])
                self._store_in_parts(pending[middle:])
                return
            content, why = is_content_failure(error), described(error)
            log.warning("a document could not be stored (%s): %s", "its content" if content else "a gateway fault", why)
        if content:  # what the document holds cannot be stored: rejected, naming why
            outcome = dict(outcome="rejected", reason=f"the record could not store it: {why}")
        else:  # the gateway's own fault: kept sealed in the holding area until it is fixed (`migrate retry`)
            outcome = dict(outcome="held", reason=f"the gateway failed storing it ({why}): report it; once "
                                                  "fixed, `epr-gateway migrate retry` takes it")
        parked = [p if p.mapped is None else replace(p, mapped=None, row=replace(
            p.row, reason_code="error", replaces=None, **outcome)) for p in pending]
        self._committed(*self._store(parked, self.exchange.authorise_many(principal=self.principal,
                                                                          submissions=[])))

    def _wait_for_writer(self) -> None:
        """The batch in flight committed (or, failed for a document of it, stored in parts), then counted."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return
        try:
            pending, decided = in_flight.result()
        except Exception as error:  # noqa: BLE001 - a dependency stops the run; else a document's: `_store_in_parts`
            if is_dependency_failure(error):
                raise
            self._store_in_parts(self._in_flight_pending)
            return
        self._committed(pending, decided)

    def _committed(self, pending: list[Prepared], decided: list[JournalRow]) -> None:
        for row in decided:  # what was not stored can no longer be a relation target
            if row.outcome not in ("migrated", "already_present") and row.entry_uuid in self._targets:
                del self._targets[row.entry_uuid]
                self._positions.pop(row.entry_uuid, None)
        self._count(pending, decided)

    def _count(self, pending: list[Prepared], rows: list[JournalRow]) -> None:
        for p, row in zip(pending, rows, strict=True):
            self.counts.add(row, p.size)
        self.on_progress(self.counts)


def source_names(sources: list[Path]) -> list[str]:
    """The media's names, as the journal keys them; ValueError when two sources share one."""
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError("two sources have the same name: the journal tells media apart by name")
    return names


def _summed(one: dict, other: dict) -> dict:
    return {key: one.get(key, 0) + other.get(key, 0) for key in one.keys() | other.keys()}


def _submissions(pending: list[Prepared]) -> list[Submission]:
    return [Submission(p.mapped.submission_set, (p.mapped.document,), p.spid) for p in pending if p.mapped is not None]


def _refusals(pending: list[Prepared]) -> list[MediaRefusal]:
    return [MediaRefusal(p.row.media, p.row.source, p.security) for p in pending if p.security]


def _patient_request(mapped) -> PatientRequest:
    demographics = mapped.demographics
    return PatientRequest(mapped.patient_id, demographics.family, demographics.given, demographics.birth_date,
                          demographics.gender)


def _outcome_row(row: JournalRow, outcome) -> JournalRow:
    if outcome.error is None:
        created = outcome.result.documents[0].created
        return replace(row, outcome="migrated" if created else "already_present",
                       entry_id=outcome.result.documents[0].entry_id,
                       reason=None if created else "the same uniqueId with the same bytes is already in the record")
    error = outcome.error
    reason = getattr(error, "message", None) or getattr(error, "reason", None) or type(error).__name__
    if isinstance(error, UnknownRelationTarget):
        return replace(row, outcome="held", reason_code=RELATION_TARGET, reason=reason, replaces=None)
    if isinstance(error, AccessRefused):
        return replace(row, outcome="held", reason_code="access-refused", reason=reason, replaces=None)
    if isinstance(error, UnknownPatient):
        return replace(row, outcome="held", reason_code="unknown-patient", reason=reason, replaces=None)
    code = "conflict" if isinstance(error, Conflict) else "refused" if isinstance(error, RecordError) else "error"
    return replace(row, outcome="rejected", reason_code=code, reason=reason, replaces=None)
