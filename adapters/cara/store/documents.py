"""The document registry and repository on SQLAlchemy (SQLite or PostgreSQL), encrypted at rest:
what the use-cases read (ITI-67 pages, entries by id or uniqueId, bodies) and the door to the two
writers, `document_batches` (documents in) and `metadata_versions` (CH:MHD-1).

Each entry's metadata (the whole `DocumentEntry`) and body are sealed separately, each under its own
data key, with the entry id and uniqueId bound as associated data (`sealed_entries`). What MHD
searches on is indexed in the clear in `document_entry`/`document_token`, author names as keyed hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, Engine, delete, insert, select

from adapters.cara.crypto import Keyring, Sealed
from adapters.cara.dates import fhir_instant
from adapters.cara.errors import ContentForwarded, IntegrityFailure, RecordError
from adapters.cara.mhd_search import DocumentQuery
from adapters.cara.model import DocumentEntry, NewDocument, Submission, SubmissionSet
from adapters.cara.store import document_batches, search_sql
from adapters.cara.store.database import ConnectionPerThread, for_driver, in_chunks
from adapters.cara.store.document_batches import BatchItem, MayReuse, SealedAhead, stored_entry
from adapters.cara.store.metadata_versions import MetadataVersions
from adapters.cara.store.outbox_schema import document_forwarded
from adapters.cara.store.schema import document_body, document_entry, submission_set
from adapters.cara.store.sealed_entries import (
    SealedEntry,
    open_body,
    open_entry,
    open_submission_set,
    seal_body,
    seal_entry,
    seal_submission_set,
)


class DeliveryRead(NamedTuple):
    """A document as a delivery sends it (`for_delivery`)."""

    entry: DocumentEntry
    content: bytes | RecordError  # the error when its bytes cannot be served
    submission_set: SubmissionSet | None


class SearchResult(NamedTuple):
    """One ITI-67 page. `next_after` = (created_seq, id) of its last entry when more entries follow (else
    None); `through` = the newest created_seq counted (None when unknown: a first request with _offset)."""

    total: int
    entries: list[DocumentEntry]
    next_after: tuple[int, str] | None = None
    through: int | None = None
    # meta.lastUpdated of each entry, in the order of `entries` (None: its time is not known), as FHIR
    # instants formatted once per entry version: the same instants `MetadataVersions.written_at` gives.
    last_updated: tuple[str | None, ...] = ()


# Opened (decrypted) entries kept per process, keyed by id and checked against the row's version: a
# version's sealed metadata never changes once written (the status lives in a clear column and is
# applied on every read), so a cached copy of the current version cannot go stale; the bound keeps
# the plaintext held in memory small.
OPENED_ENTRIES_CACHED = 5_000
_VERSION_SQL = "SELECT version FROM document_version WHERE patient_pid = ?"
# What `SealedEntry` needs of a row, in its order (`search_sql` reads the same columns for a page).
_SEALED_COLUMNS = (document_entry.c.id, document_entry.c.unique_id, document_entry.c.status,
                   document_entry.c.sealed_key, document_entry.c.sealed, document_entry.c.version)
# The same columns, the patient last, for the reads by key (plain SQL: `_entry_where`), named from the one list.
_ENTRY_SELECT = (f"SELECT {', '.join(c.name for c in (*_SEALED_COLUMNS, document_entry.c.patient_pid))} "
                 f"FROM {document_entry.name} WHERE ")
_ENTRY_BY_ID = _ENTRY_SELECT + "id = ?"
_ENTRY_BY_UNIQUE_ID = _ENTRY_SELECT + "unique_id = ?"
_BODY_BY_ENTRY = "SELECT sealed_key, sealed FROM document_body WHERE entry_id = ?"


def _bytes(value) -> bytes:
    """A binary column as the driver gives it (bytes; a buffer from some drivers) as bytes."""
    return value if isinstance(value, bytes) else bytes(value)


class DatabaseDocumentStore:
    def __init__(self, *, engine: Engine, keyring: Keyring):
        self._engine = engine
        self._keyring = keyring
        self._opened: dict[str, DocumentEntry] = {}
        # (entry id, version) -> meta.lastUpdated, formatted once: a version's time never changes.
        self._written: dict[tuple[str, int], str | None] = {}
        self._version_reader = ConnectionPerThread(self._detached_connection)  # SQLite (`document_version`)
        self.versions = MetadataVersions(engine=engine, keyring=keyring, current=self.get_entry,
                                         forget=self._forget)

    # -- provide (documents in: see document_batches) ------------------------------------------
    def provide_many(self, items: list[BatchItem], *, may_reuse: MayReuse,
                     within: Callable[[Connection, list], None] | None = None,
                     sealed_bodies: dict[str, Sealed] | None = None, sealed: SealedAhead | None = None) -> list:
        """Many submissions in one transaction (`document_batches.provide_many`). `may_reuse`: whether a
        uniqueId already stored may be answered with its copy (the use-case layer's rule). `sealed_bodies`:
        entry id → the body as `seal_body` sealed it beforehand (outside the transaction); `sealed`:
        metadata and submission sets sealed beforehand the same way; whatever is missing is sealed there."""
        return document_batches.provide_many(engine=self._engine, keyring=self._keyring, open_entry=self._open,
                                             items=items, may_reuse=may_reuse, within=within,
                                             sealed_bodies=sealed_bodies, sealed=sealed)

    def seal_body(self, document: NewDocument) -> Sealed:
        """A document's body sealed under its own data key, bound to its entry id and uniqueId."""
        return seal_body(self._keyring, document)

    def seal_metadata(self, document: NewDocument, *, patient_pid: str, submission_set_id: str) -> Sealed | None:
        """The metadata a provide stores for a document naming no other one, sealed ahead (outside
        the transaction); None for a document with relations, whose targets the transaction resolves."""
        if document.relations:
            return None
        return seal_entry(self._keyring, stored_entry(document, patient_pid, submission_set_id, []))

    def seal_submission_set(self, submission: Submission, *, patient_pid: str) -> Sealed:
        """A submission set as a provide stores it, sealed ahead (outside the transaction)."""
        return seal_submission_set(self._keyring, replace(submission.submission_set, patient_pid=patient_pid))

    def string_hash(self, param: str, normalised: str) -> str:
        return self._keyring.index_hash(param, normalised)

    # -- find ---------------------------------------------------------------------------------
    def search(self, query: DocumentQuery) -> SearchResult:
        """The total and the page of entries for one patient and the patients merged into it, newest
        first, with the keyset positions the next page starts from (see `SearchResult`). Plain SQL on
        the driver's connection: see `search_sql` for why."""
        dialect = self._engine.dialect.name
        statements = search_sql.build(query, dialect=dialect)
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(statements.count_sql, statements.params)
            total = cursor.fetchone()[0]
            page: list[tuple[str, str, int, int]] = []
            if query.count and total > query.offset:  # _count=0 asks the total only
                # One row more than the page: whether a next page exists, whatever arrived since the count.
                cursor.execute(statements.page_sql, (*statements.page_params, query.count + 1, query.offset))
                page = cursor.fetchall()
            more = len(page) > query.count
            page = page[:query.count]
            opened = {row[0]: self._opened.get(row[0]) for row in page}
            written = self._written
            # An entry held at an older metadata version (updated in another worker) is read again, with
            # the time of its version (meta.lastUpdated) in the same statement.
            missing = [entry_id for entry_id, _, version, _ in page
                       if opened[entry_id] is None or opened[entry_id].version != version
                       or (entry_id, version) not in written]
            if missing:
                cursor.execute(search_sql.rows_sql(len(missing), dialect=dialect), missing)
                if len(written) >= OPENED_ENTRIES_CACHED:
                    written.clear()
                for row in cursor.fetchall():
                    opened[row[0]] = self._open(SealedEntry(*row[:6]))
                    written[(row[0], row[5])] = None if row[6] is None else fhir_instant(_stored_time(row[6]))
            cursor.close()
        finally:
            connection.close()  # back to the pool (which ends the read transaction)
        entries = [self._with_status(opened[entry_id], status) for entry_id, status, _, _ in page]
        through = query.through
        if through is None and page and query.offset == 0 and query.after is None:
            through = page[0][3]  # the first page's first entry is the newest match
        last_updated = tuple(written.get((e.entry_id, e.version)) for e in entries)
        return SearchResult(total, entries, (page[-1][3], page[-1][0]) if more else None, through, last_updated)

    def document_version(self, pid: str) -> int:
        """The patient's document version (0 before any document): one primary-key read on the driver's
        connection, made with every remembered search (see gateway/exchanges/search_pages.py)."""
        if self._engine.dialect.name == "sqlite":
            # On a connection this thread keeps, detached from the pool (so it takes no pool slot; reads
            # run on the event loop, so that is usually one): a check-out and return cost ~3x the read.
            # A SELECT opens no transaction in sqlite3 and `fetchall` runs the statement to its end, so
            # the kept connection holds no snapshot between reads and sees every commit of any process.
            rows = self._version_reader.get().execute(_VERSION_SQL, (pid,)).fetchall()
            return rows[0][0] if rows else 0
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(for_driver(_VERSION_SQL, self._engine.dialect.name), (pid,))
            row = cursor.fetchone()
            cursor.close()
        finally:
            connection.close()
        return row[0] if row else 0

    def _detached_connection(self):
        pooled = self._engine.raw_connection()  # opened with the engine's pragmas
        pooled.detach()
        return pooled.dbapi_connection

    def close(self) -> None:
        """Close the connections threads kept for `document_version` (a process that builds many gateways,
        the test suite, ran out of low descriptor numbers)."""
        self._version_reader.close()

    # -- retrieve -----------------------------------------------------------------------------
    def named_entry(self, *, entry_id: str | None = None, unique_id: str | None = None) -> DocumentEntry | None:
        """The entry a request names by logical id or by uniqueId (a relation's target), opened, or
        None. Whether the caller may name it is the use-case layer's decision, not the store's."""
        if entry_id:
            return self._entry_where(_ENTRY_BY_ID, entry_id)
        return self._entry_where(_ENTRY_BY_UNIQUE_ID, unique_id) if unique_id else None

    def get_entry(self, entry_id: str) -> DocumentEntry | None:
        return self._entry_where(_ENTRY_BY_ID, entry_id)

    def entry_for_unique_id(self, unique_id: str) -> DocumentEntry | None:
        return self._entry_where(_ENTRY_BY_UNIQUE_ID, unique_id)

    def _entry_where(self, sql: str, key: str) -> DocumentEntry | None:
        """One entry by id or uniqueId, opened at the version its row records, with its row's status
        and patient (the document's own MPI-PID, never rewritten): every read by key passes here.
        Plain SQL on the driver: every ITI-68 read and relation look-up passes here, and a Core
        statement's compilation and cache key cost several times the database's own work (see `search_sql`)."""
        with self._engine.connect() as connection:
            row = connection.exec_driver_sql(for_driver(sql, connection.dialect.name), (key,)).one_or_none()
        if row is None:
            return None
        entry_id, unique_id, status, sealed_key, sealed, version, patient_pid = row
        entry = self._open(SealedEntry(entry_id, unique_id, status, _bytes(sealed_key), _bytes(sealed), version))
        return entry.filed_under(patient_pid)

    def read_content(self, entry: DocumentEntry) -> bytes:
        """The document's bytes, decrypted and checked against the hash recorded at provide time;
        ContentForwarded when they were delivered and dropped (forward-only)."""
        with self._engine.connect() as connection:
            row = connection.exec_driver_sql(for_driver(_BODY_BY_ENTRY, connection.dialect.name),
                                             (entry.entry_id,)).one_or_none()
            forwarded = None if row is not None else connection.execute(
                select(document_forwarded.c.communities).where(document_forwarded.c.entry_id == entry.entry_id)
            ).scalar()
        if forwarded is not None:
            raise ContentForwarded(entry.entry_id, forwarded)
        if row is None:
            raise IntegrityFailure(f"the content of document {entry.entry_id} is missing from the repository")
        content = open_body(self._keyring, entry, Sealed(_bytes(row[0]), _bytes(row[1])))
        if hashlib.sha1(content).hexdigest() != entry.sha1 or len(content) != entry.size:
            raise IntegrityFailure(f"the content of document {entry.entry_id} does not match its recorded hash")
        return content

    def for_delivery(self, entry_ids: list[str]) -> dict[str, DeliveryRead]:
        """The entries, bytes and submission sets of documents to deliver, read together (a few IN-list
        queries for a claimed batch, not several queries per document). Bytes that cannot be served
        (forwarded, missing, failing their hash) are the error `read_content` would raise."""
        found: dict[str, DeliveryRead] = {}
        with self._engine.connect() as connection:
            for chunk in in_chunks(list(dict.fromkeys(entry_ids))):
                entries = {}
                for row in connection.execute(select(*_SEALED_COLUMNS, document_entry.c.patient_pid)
                                              .where(document_entry.c.id.in_(chunk))):
                    entry = self._open(SealedEntry(*row[:6]))
                    entries[row.id] = entry.filed_under(row.patient_pid)
                bodies = {row.entry_id: Sealed(row.sealed_key, row.sealed) for row in connection.execute(
                    select(document_body.c.entry_id, document_body.c.sealed_key, document_body.c.sealed)
                    .where(document_body.c.entry_id.in_(chunk)))}
                forwarded = dict(connection.execute(
                    select(document_forwarded.c.entry_id, document_forwarded.c.communities)
                    .where(document_forwarded.c.entry_id.in_(chunk))).all())
                set_ids = list({e.submission_set_id for e in entries.values() if e.submission_set_id})
                sets = {row.id: open_submission_set(self._keyring, row.id, row.unique_id,
                                                    Sealed(row.sealed_key, row.sealed))
                        for row in connection.execute(select(submission_set.c.id, submission_set.c.unique_id,
                                                             submission_set.c.sealed_key, submission_set.c.sealed)
                                                      .where(submission_set.c.id.in_(set_ids)))} if set_ids else {}
                for entry_id, entry in entries.items():
                    found[entry_id] = DeliveryRead(entry, self._checked_body(entry, bodies.get(entry_id),
                                                                             forwarded.get(entry_id)),
                                                   sets.get(entry.submission_set_id or ""))
        return found

    def _checked_body(self, entry: DocumentEntry, sealed: Sealed | None, forwarded: str | None) -> bytes | RecordError:
        if forwarded is not None:
            return ContentForwarded(entry.entry_id, forwarded)
        if sealed is None:
            return IntegrityFailure(f"the content of document {entry.entry_id} is missing from the repository")
        try:
            content = open_body(self._keyring, entry, sealed)
        except IntegrityFailure as failure:
            return failure
        if hashlib.sha1(content).hexdigest() != entry.sha1 or len(content) != entry.size:
            return IntegrityFailure(f"the content of document {entry.entry_id} does not match its recorded hash")
        return content

    def read_submission_set(self, submission_set_id: str) -> SubmissionSet | None:
        """The submission set a document came in, opened (a delivery sends its title, authors, time)."""
        with self._engine.connect() as connection:
            row = connection.execute(select(submission_set.c.unique_id, submission_set.c.sealed_key,
                                            submission_set.c.sealed)
                                     .where(submission_set.c.id == submission_set_id)).one_or_none()
        if row is None:
            return None
        return open_submission_set(self._keyring, submission_set_id, row.unique_id, Sealed(row.sealed_key, row.sealed))

    @staticmethod
    def drop_content(connection: Connection, entry_id: str, *, communities: str, now: datetime) -> bool:
        """In the caller's transaction: the document's bytes removed, the entry marked forwarded to
        `communities` (forward-only, once every community holds it). False when already dropped."""
        removed = connection.execute(delete(document_body).where(document_body.c.entry_id == entry_id)).rowcount
        if removed:
            connection.execute(insert(document_forwarded).values(entry_id=entry_id, forwarded_at=now,
                                                                 communities=communities[:512]))
        return bool(removed)

    def _open(self, row: SealedEntry) -> DocumentEntry:
        """The entry of a row, from this process's opened copies when it holds the row's version."""
        entry = self._opened.get(row.id)
        if entry is None or entry.unique_id != row.unique_id or entry.version != row.version:
            entry = open_entry(self._keyring, row)
            if len(self._opened) >= OPENED_ENTRIES_CACHED:
                self._opened.clear()
            self._opened[row.id] = entry
        return self._with_status(entry, row.status)

    def _forget(self, entry_id: str) -> None:
        self._opened.pop(entry_id, None)

    @staticmethod
    def _with_status(entry: DocumentEntry, status: str | None) -> DocumentEntry:
        """The status lives in a clear column (it changes); the sealed metadata keeps the first one."""
        return entry.copy_with(status=status) if status and status != entry.status else entry


def _stored_time(value: datetime | str) -> datetime:
    """A DateTime column as the driver gives it: PostgreSQL a datetime, SQLite the text SQLAlchemy wrote."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
