"""Documents into the record: many submissions in one transaction (one document alone is a batch of
one). What the store checks (existing copies, used submission-set uniqueIds, relation targets) is
read up front in a few IN-list queries, and each submission is decided in memory against that state
plus what the batch accepted before it, so a refused submission leaves nothing behind and does not
touch the others (no savepoints). The rows go in as one multi-row INSERT per table.

The store decides no consent: whether a caller may name a target is the use-case layer's decision,
taken before (`gateway/exchanges/upload_rules.py`); whether a uniqueId already stored may be answered
with its stored copy is asked of the use-case layer here (`may_reuse`), in the transaction that finds
the copy, so no concurrent provide slips between the decision and the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from adapters.cara.crypto import Keyring, Sealed
from adapters.cara.errors import Conflict, RecordError, unknown_relation_target
from adapters.cara.dates import instant
from adapters.cara.model import DocumentEntry, NewDocument, Relation, Submission
from adapters.cara.store.database import driver_datetime, for_driver, in_chunks, in_list, insert_rows
from adapters.cara.store.schema import (
    document_body,
    document_entry,
    document_relation,
    document_token,
    submission_set,
)
from adapters.cara.store.sealed_entries import (
    SealedEntry,
    index_tokens,
    seal_body,
    seal_entry,
    seal_submission_set,
)


@dataclass(frozen=True)
class ProvidedDocument:
    entry_id: str
    created: bool  # False: the same uniqueId with the same bytes was already stored
    entry: DocumentEntry | None = None  # when created: the entry as stored (relations resolved)


@dataclass(frozen=True)
class ProvideResult:
    submission_set_id: str
    documents: tuple[ProvidedDocument, ...]


class BatchItem(NamedTuple):
    submission: Submission
    patient_pid: str


class SealedAhead(NamedTuple):
    """What a batch provide sealed before its transaction: entry id → metadata (`seal_metadata`),
    submission set id → submission set (`seal_submission_set`)."""

    metadata: dict[str, Sealed]
    submission_sets: dict[str, Sealed]


def stored_entry(document: NewDocument, patient_pid: str, submission_set_id: str, relations: list) -> DocumentEntry:
    """The entry as a provide seals and stores it."""
    return document.entry.copy_with(patient_pid=patient_pid, relations=relations, submission_set_id=submission_set_id)


# Whether a submitter may be answered with the copy a uniqueId already has (its stored entry, the
# submission's MPI-PID): the idempotent answer names the entry and confirms its bytes.
MayReuse = Callable[[DocumentEntry, str], bool]


@dataclass
class _Known:
    """What the batch knows of a uniqueId: stored before the batch (`stored`: its entry as stored) or
    accepted earlier in it (`stored` None: the batch's own submitter's)."""

    entry_id: str
    patient_pid: str
    sha1: str
    status: str
    stored: DocumentEntry | None = None


def uniqueid_in_use(unique_id: str) -> Conflict:
    """The answer for a uniqueId the record already holds, to a submitter who may not be answered with
    that copy: the same whatever the copy holds and whoever's it is. The uniqueId cannot be stored twice;
    saying more would name the entry or confirm its bytes (an existence oracle)."""
    return Conflict(f"document uniqueId {unique_id} is already used in this record: a new document needs a new "
                    "uniqueId", location="DocumentReference.masterIdentifier")


# The batch's rows as tuples in these column orders (see `_BatchProvide.write`).
_SET_COLUMNS = ("id", "unique_id", "patient_pid", "source_id", "submitted_at", "sealed_key", "sealed")
_ENTRY_COLUMNS = ("id", "unique_id", "patient_pid", "status", "confidentiality", "date", "period_start",
                  "period_end", "submission_set_id", "created_seq", "sealed_key", "sealed")
_TOKEN_COLUMNS = ("entry_id", "param", "system", "value")
_BODY_COLUMNS = ("entry_id", "sealed_key", "sealed")
_RELATION_COLUMNS = ("source_id", "target_id", "code")
_LOAD_COLUMNS = "id, unique_id, patient_pid, status, sealed_key, sealed, version"


class _BatchRows:
    """The rows of the submissions accepted so far, inserted together at the end (one statement per
    table): the per-row cost of a provide is then sealing, not statement round trips."""

    def __init__(self):
        self.sets: list[tuple] = []
        self.entries: list[tuple] = []
        self.tokens: list[tuple] = []
        self.bodies: list[tuple] = []
        self.relations: list[tuple] = []
        self.superseded: list[str] = []
        self.patients: set[str] = set()  # whose documents change (their document version moves)

    def extend(self, other: _BatchRows) -> None:
        for name in ("sets", "entries", "tokens", "bodies", "relations", "superseded"):
            getattr(self, name).extend(getattr(other, name))
        self.patients |= other.patients


class _LoadedRow(NamedTuple):
    id: str
    unique_id: str
    patient_pid: str
    status: str
    sealed_key: bytes
    sealed: bytes
    version: int


class _BatchProvide:
    """One batch inside one transaction (see the module's docstring)."""

    def __init__(self, connection: Connection, keyring: Keyring, open_entry: Callable[[SealedEntry], DocumentEntry],
                 items: list[BatchItem], may_reuse: MayReuse, sealed_bodies: dict[str, Sealed] | None = None,
                 sealed: SealedAhead | None = None):
        self.keyring = keyring
        self.open_entry = open_entry
        self.may_reuse = may_reuse
        self.sealed_bodies = sealed_bodies or {}
        self.sealed = sealed or SealedAhead({}, {})
        self.connection = connection
        self.items = items
        self.by_unique_id: dict[str, _Known] = {}
        self.by_entry_id: dict[str, str] = {}  # entry id -> uniqueId, for relations naming a logical id
        self.sets_taken: set[str] = set()
        self.set_of: dict[str, str] = {}  # entry id -> submission set id, for entries of this batch
        self.rows = _BatchRows()
        self.seq = time.time_ns()
        self.dialect = connection.dialect.name

    def load(self) -> None:
        unique_ids, entry_ids, set_ids = set(), set(), set()
        for submission, _ in self.items:
            set_ids.add(submission.submission_set.unique_id)
            for document in submission.documents:
                unique_ids.add(document.entry.unique_id)
                for pending in document.relations:
                    if pending.target_entry_id:
                        entry_ids.add(pending.target_entry_id)
                    else:
                        unique_ids.add(pending.target_unique_id)
        # Plain SQL on the driver (as `search_sql` for reads): a Core statement with an IN list is
        # compiled afresh for every batch size and costs several times what SQLite takes to answer.
        for column, values in (("unique_id", unique_ids), ("id", entry_ids)):
            for chunk in in_chunks(sorted(values)):
                sql = f"SELECT {_LOAD_COLUMNS} FROM document_entry WHERE {column} IN {in_list(len(chunk))}"
                for row in self._select(sql, chunk):
                    row = _LoadedRow(*row)
                    stored = self.open_entry(SealedEntry(row.id, row.unique_id, row.status, row.sealed_key,
                                                         row.sealed, row.version))
                    self.by_unique_id[row.unique_id] = _Known(row.id, row.patient_pid, stored.sha1, row.status,
                                                              stored.filed_under(row.patient_pid))
                    self.by_entry_id[row.id] = row.unique_id
        for chunk in in_chunks(sorted(set_ids)):
            sql = f"SELECT unique_id FROM submission_set WHERE unique_id IN {in_list(len(chunk))}"
            self.sets_taken.update(unique_id for unique_id, in self._select(sql, chunk))

    def _select(self, sql: str, params: list) -> list[tuple]:
        return self.connection.exec_driver_sql(for_driver(sql, self.dialect), tuple(params)).all()

    def decide(self, submission: Submission, patient_pid: str) -> ProvideResult:
        """The submission's result, or the RecordError that refuses it; its rows are added to the
        batch only when every document of it passed."""
        rows = _BatchRows()
        accepted: dict[str, _Known] = {}
        provided: list[ProvidedDocument | None] = []
        new_documents: list[NewDocument] = []
        for document in submission.documents:
            unique_id = document.entry.unique_id
            known = accepted.get(unique_id) or self.by_unique_id.get(unique_id)
            if known is not None:
                if known.stored is not None and not self.may_reuse(known.stored, patient_pid):
                    raise uniqueid_in_use(unique_id)
                if known.sha1 != document.entry.sha1 or known.patient_pid != patient_pid:
                    raise Conflict(f"document uniqueId {unique_id} is already stored with other content",
                                   location="DocumentReference.masterIdentifier")
                provided.append(ProvidedDocument(known.entry_id, created=False))
                continue
            accepted[unique_id] = _Known(document.entry.entry_id, patient_pid, document.entry.sha1, "current")
            new_documents.append(document)
            provided.append(None)  # its ProvidedDocument once its relations are resolved (below)
        if not new_documents:
            # A resubmission: answer with the set that first stored it (in this batch or before).
            first = provided[0].entry_id
            submission_set_id = self.set_of.get(first) or _submission_set_of(self.connection, first)
            return ProvideResult(submission_set_id, tuple(provided))
        subset = replace(submission.submission_set, patient_pid=patient_pid)
        if subset.unique_id in self.sets_taken:
            raise Conflict(f"SubmissionSet uniqueId {subset.unique_id} was already used for other documents",
                           location="List.identifier")
        sealed = self.sealed.submission_sets.get(subset.submission_set_id) or seal_submission_set(self.keyring, subset)
        rows.sets.append((subset.submission_set_id, subset.unique_id, patient_pid, subset.source_id,
                          driver_datetime(datetime.now(UTC).replace(tzinfo=None), self.dialect),
                          sealed.wrapped_key, sealed.ciphertext))
        rows.patients.add(patient_pid)
        replaced_here: dict[str, str] = {}
        stored: dict[str, DocumentEntry] = {}  # uniqueId → the entry as stored
        for document in new_documents:
            relations = [self._relation(pending, patient_pid, accepted, replaced_here) for pending in document.relations]
            entry = self._document_rows(rows, document, patient_pid, subset.submission_set_id, relations)
            stored[entry.unique_id] = entry
        provided = [p or ProvidedDocument(d.entry.entry_id, created=True, entry=stored[d.entry.unique_id])
                    for p, d in zip(provided, submission.documents, strict=True)]
        # Accepted: from now on later submissions of the batch see these documents.
        self.rows.extend(rows)
        self.sets_taken.add(subset.unique_id)
        for unique_id, known in accepted.items():
            self.by_unique_id[unique_id] = known
            self.by_entry_id[known.entry_id] = unique_id
            self.set_of[known.entry_id] = subset.submission_set_id
        for unique_id in replaced_here.values():
            self.by_unique_id[unique_id].status = "superseded"
        return ProvideResult(subset.submission_set_id, tuple(provided))

    def _relation(self, pending, patient_pid: str, accepted: dict[str, _Known],
                  replaced_here: dict[str, str]) -> Relation:
        key = pending.target_entry_id or pending.target_unique_id
        unique_id = self.by_entry_id.get(key) if pending.target_entry_id else key
        known = (accepted.get(unique_id) or self.by_unique_id.get(unique_id)) if unique_id else None
        if known is None or known.patient_pid != patient_pid or known.status == "deleted":
            raise unknown_relation_target(key)
        if pending.code == "replaces":
            if known.status != "current" or known.entry_id in replaced_here:
                status = "superseded" if known.entry_id in replaced_here else known.status
                raise Conflict(f"document {key} is {status} and cannot be replaced again",
                               location="DocumentReference.relatesTo")
            replaced_here[known.entry_id] = unique_id
        return Relation(pending.code, known.entry_id)

    def _document_rows(self, rows: _BatchRows, document: NewDocument, patient_pid: str, submission_set_id: str,
                       relations: list[Relation]) -> DocumentEntry:
        """The document's rows added to `rows`; returns its entry as stored."""
        entry = stored_entry(document, patient_pid, submission_set_id, relations)
        # Sealed ahead when it names no other document (the same entry: see `seal_metadata`).
        metadata = (None if relations else self.sealed.metadata.get(entry.entry_id)) or seal_entry(self.keyring, entry)
        body = self.sealed_bodies.get(entry.entry_id) or seal_body(self.keyring, document)
        self.seq += 1
        dialect = self.dialect
        rows.entries.append((
            entry.entry_id, entry.unique_id, patient_pid, entry.status, entry.confidentiality_level,
            _driver_instant(entry.date, dialect), _driver_instant(entry.service_start, dialect),
            _driver_instant(entry.service_stop, dialect), submission_set_id, self.seq,
            metadata.wrapped_key, metadata.ciphertext))
        rows.tokens.extend((t["entry_id"], t["param"], t["system"], t["value"])
                           for t in index_tokens(self.keyring, entry))
        rows.bodies.append((entry.entry_id, body.wrapped_key, body.ciphertext))
        for relation in relations:
            rows.relations.append((entry.entry_id, relation.target_entry_id, relation.code))
            if relation.code == "replaces":
                rows.superseded.append(relation.target_entry_id)
        return entry

    def write(self) -> None:
        """One multi-row INSERT per table (`insert_rows`), straight to the driver: SQLAlchemy's
        per-value bind processing (a copy of every sealed body among them) cost more than the inserts
        themselves, and an executemany still steps the driver once per row."""
        rows = self.rows
        for table, columns, values in ((submission_set, _SET_COLUMNS, rows.sets),
                                       (document_entry, _ENTRY_COLUMNS, rows.entries),
                                       (document_token, _TOKEN_COLUMNS, rows.tokens),
                                       (document_body, _BODY_COLUMNS, rows.bodies),
                                       (document_relation, _RELATION_COLUMNS, rows.relations)):
            if values:
                insert_rows(self.connection, table.name, columns, values)
        for chunk in in_chunks(rows.superseded):
            sql = f"UPDATE document_entry SET status = 'superseded' WHERE id IN {in_list(len(chunk))}"
            self.connection.exec_driver_sql(for_driver(sql, self.dialect), tuple(chunk))


def _submission_set_of(connection: Connection, entry_id: str) -> str:
    return connection.execute(
        select(document_entry.c.submission_set_id).where(document_entry.c.id == entry_id)
    ).scalar_one()


def _driver_instant(value, dialect: str):
    """A DocumentReference date as `instant` stores it, bound the way SQLAlchemy would."""
    value = instant(value)
    return None if value is None else driver_datetime(value, dialect)


def provide_many(*, engine: Engine, keyring: Keyring, open_entry: Callable[[SealedEntry], DocumentEntry],
                 items: list[BatchItem], may_reuse: MayReuse, within: Callable[[Connection, list], None] | None = None,
                 sealed_bodies: dict[str, Sealed] | None = None, sealed: SealedAhead | None = None) -> list:
    """Store many submissions in one transaction: for each, its ProvideResult or the RecordError that
    refused it (nothing of a refused one is stored). `within(connection, results)` runs before the
    commit (the audit records, a migration's journal); if it raises, nothing is stored. A unique-key
    race with a concurrent writer is retried once, so the loser sees the winner's copy and answers as
    `may_reuse` allows (idempotently, or `uniqueid_in_use`)."""
    arguments = (engine, keyring, open_entry, items, may_reuse, within, sealed_bodies, sealed)
    try:
        return _provide_many_once(*arguments)
    except IntegrityError:
        return _provide_many_once(*arguments)


def _provide_many_once(engine, keyring, open_entry, items, may_reuse, within, sealed_bodies, sealed) -> list:
    with engine.begin() as connection:
        batch = _BatchProvide(connection, keyring, open_entry, items, may_reuse, sealed_bodies, sealed)
        batch.load()
        results: list = []
        for submission, patient_pid in items:
            try:
                results.append(batch.decide(submission, patient_pid))
            except RecordError as error:
                results.append(error)
        batch.write()
        bump_document_versions(connection, sorted(batch.rows.patients))
        if within is not None:
            within(connection, results)
    return results


_BUMP_SQL = ("INSERT INTO document_version (patient_pid, version) VALUES (?, 1) "
             "ON CONFLICT (patient_pid) DO UPDATE SET version = document_version.version + 1")


def bump_document_versions(connection: Connection, pids: list[str]) -> None:
    """Inside the change's transaction: the version moves exactly when the documents do."""
    if pids:
        connection.exec_driver_sql(for_driver(_BUMP_SQL, connection.dialect.name), [(pid,) for pid in pids])
