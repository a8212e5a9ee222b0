"""The document registry and repository on SQLAlchemy (SQLite or PostgreSQL), encrypted at rest.

Each entry's metadata (the whole `DocumentEntry`) and body are sealed separately, each under its own
data key, with the entry id and uniqueId bound as associated data. What MHD searches on is indexed in
the clear in `document_entry`/`document_token`, author names as keyed hashes.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import orjson
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapters.cara.crypto import DecryptionFailed, Keyring, Sealed
from adapters.cara.errors import Conflict, IntegrityFailure, ProfileViolation, RecordError
from adapters.cara.dates import fhir_instant, instant
from adapters.cara.mhd_search import DocumentQuery, normalise_name
from adapters.cara.model import DocumentEntry, NewDocument, Relation, Submission
from adapters.cara.store import search_sql
from adapters.cara.store.database import driver_datetime, for_driver, in_chunks, in_list, insert_rows
from adapters.cara.store.schema import (
    document_body,
    document_entry,
    document_entry_version,
    document_relation,
    document_token,
    submission_set,
)


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


class _SealedRow(NamedTuple):
    id: str
    unique_id: str
    status: str
    sealed_key: bytes
    sealed: bytes
    version: int = 1


@dataclass(frozen=True)
class ProvidedDocument:
    entry_id: str
    created: bool  # False: the same uniqueId with the same bytes was already stored


@dataclass(frozen=True)
class ProvideResult:
    submission_set_id: str
    documents: tuple[ProvidedDocument, ...]


def _metadata_context(entry_id: str, unique_id: str, version: int = 1) -> str:
    """Version 1 keeps the context entries were first sealed with; later versions bind their number,
    so an older version's ciphertext copied back onto the row does not decrypt as the current one."""
    base = f"entry-metadata|{entry_id}|{unique_id}"
    return base if version == 1 else f"{base}|v{version}"


def _body_context(entry_id: str, unique_id: str) -> str:
    return f"entry-body|{entry_id}|{unique_id}"


# Opened (decrypted) entries kept per process. An entry's sealed metadata never changes once written
# (its status lives in a clear column and is applied on every read), so a cached copy cannot go
# stale; the bound keeps the plaintext held in memory small.
OPENED_ENTRIES_CACHED = 5_000


class DatabaseDocumentStore:
    def __init__(self, *, engine: Engine, keyring: Keyring):
        self._engine = engine
        self._keyring = keyring
        self._opened: dict[str, DocumentEntry] = {}
        # (entry id, version) -> meta.lastUpdated, formatted once: a version's time never changes.
        self._written: dict[tuple[str, int], str | None] = {}
        self._version_reader = threading.local()  # per thread: its kept connection (`document_version`)

    # -- provide ------------------------------------------------------------------------------
    def provide(self, submission: Submission, *, patient_pid: str,
                within: Callable[[Connection, ProvideResult], None] | None = None) -> ProvideResult:
        """Store a whole submission or nothing. `within` runs in the same transaction before it commits
        (the audit record that proves the change); if it raises, nothing is stored. A unique-key race
        with a concurrent provide of the same uniqueId is retried once, so the loser sees the winner's
        copy and answers idempotently."""
        try:
            return self._provide_once(submission, patient_pid, within)
        except IntegrityError:
            return self._provide_once(submission, patient_pid, within)

    def _provide_once(self, submission: Submission, patient_pid: str, within) -> ProvideResult:
        with self._engine.begin() as connection:
            stored: dict[str, ProvidedDocument] = {}
            for document in submission.documents:
                existing_id = self._existing_copy(connection, document, patient_pid)
                if existing_id:
                    stored[document.entry.unique_id] = ProvidedDocument(existing_id, created=False)
            new_documents = [d for d in submission.documents if d.entry.unique_id not in stored]
            if new_documents:
                submission_set_id = self._insert_submission_set(connection, submission, patient_pid)
                for document in new_documents:
                    entry = self._insert_document(connection, document, patient_pid, submission_set_id)
                    stored[entry.unique_id] = ProvidedDocument(entry.entry_id, created=True)
            else:  # a resubmission: answer with what the first one stored
                submission_set_id = self._submission_set_of(connection, next(iter(stored.values())).entry_id)
            result = ProvideResult(submission_set_id, tuple(stored[d.entry.unique_id] for d in submission.documents))
            if new_documents:
                bump_document_versions(connection, [patient_pid])
            if within is not None:
                within(connection, result)
        return result

    def _existing_copy(self, connection, document: NewDocument, patient_pid: str) -> str | None:
        row = connection.execute(
            select(document_entry.c.id, document_entry.c.unique_id, document_entry.c.patient_pid,
                   document_entry.c.sealed_key, document_entry.c.sealed)
            .where(document_entry.c.unique_id == document.entry.unique_id)
        ).one_or_none()
        if row is None:
            return None
        stored = self._open_entry(row)
        if stored.sha1 != document.entry.sha1 or row.patient_pid != patient_pid:
            raise Conflict(f"document uniqueId {document.entry.unique_id} is already stored with other content",
                           location="DocumentReference.masterIdentifier")
        return row.id

    def _submission_set_of(self, connection, entry_id: str) -> str:
        return connection.execute(
            select(document_entry.c.submission_set_id).where(document_entry.c.id == entry_id)
        ).scalar_one()

    def _insert_submission_set(self, connection, submission: Submission, patient_pid: str) -> str:
        subset = replace(submission.submission_set, patient_pid=patient_pid)
        taken = connection.execute(
            select(submission_set.c.id).where(submission_set.c.unique_id == subset.unique_id)
        ).scalar_one_or_none()
        if taken:
            raise Conflict(f"SubmissionSet uniqueId {subset.unique_id} was already used for other documents",
                           location="List.identifier")
        sealed = self._keyring.seal(json.dumps(_jsonable(subset)).encode(),
                                    _set_context(subset.submission_set_id, subset.unique_id))
        connection.execute(insert(submission_set).values(
            id=subset.submission_set_id, unique_id=subset.unique_id, patient_pid=patient_pid,
            source_id=subset.source_id, submitted_at=datetime.now(UTC).replace(tzinfo=None),
            sealed_key=sealed.wrapped_key, sealed=sealed.ciphertext))
        return subset.submission_set_id

    def _insert_document(self, connection, document: NewDocument, patient_pid: str,
                         submission_set_id: str) -> DocumentEntry:
        relations = [self._resolve_relation(connection, pending, patient_pid) for pending in document.relations]
        entry = replace(document.entry, patient_pid=patient_pid, relations=relations,
                        submission_set_id=submission_set_id)
        metadata = self._keyring.seal(json.dumps(entry.to_json()).encode(),
                                      _metadata_context(entry.entry_id, entry.unique_id))
        body = self._keyring.seal(document.content, _body_context(entry.entry_id, entry.unique_id))
        connection.execute(insert(document_entry).values(
            id=entry.entry_id, unique_id=entry.unique_id, patient_pid=patient_pid, status=entry.status,
            confidentiality=entry.confidentiality_level, date=instant(entry.date),
            period_start=instant(entry.service_start), period_end=instant(entry.service_stop),
            submission_set_id=submission_set_id, created_seq=time.time_ns(), version=1,
            sealed_key=metadata.wrapped_key, sealed=metadata.ciphertext))
        connection.execute(insert(document_token), self._tokens(entry))
        connection.execute(insert(document_body).values(
            entry_id=entry.entry_id, sealed_key=body.wrapped_key, sealed=body.ciphertext))
        for relation in relations:
            connection.execute(insert(document_relation).values(
                source_id=entry.entry_id, target_id=relation.target_entry_id, code=relation.code))
            if relation.code == "replaces":
                connection.execute(update(document_entry)
                                   .where(document_entry.c.id == relation.target_entry_id)
                                   .values(status="superseded"))
        return entry

    def _resolve_relation(self, connection, pending, patient_pid: str) -> Relation:
        column = document_entry.c.id if pending.target_entry_id else document_entry.c.unique_id
        key = pending.target_entry_id or pending.target_unique_id
        row = connection.execute(
            select(document_entry.c.id, document_entry.c.status, document_entry.c.patient_pid).where(column == key)
        ).one_or_none()
        if row is None or row.patient_pid != patient_pid:
            raise unknown_relation_target(key)
        if pending.code == "replaces" and row.status != "current":
            raise Conflict(f"document {key} is {row.status} and cannot be replaced again",
                           location="DocumentReference.relatesTo")
        return Relation(pending.code, row.id)

    def _tokens(self, entry: DocumentEntry) -> list[dict]:
        rows = []

        def add(param: str, system: str | None, value: str | None) -> None:
            if value:
                rows.append({"entry_id": entry.entry_id, "param": param, "system": system, "value": value})

        for code in entry.class_codes:
            add("category", code.system, code.code)
        add("type", entry.type_code.system, entry.type_code.code)
        add("setting", entry.practice_setting.system, entry.practice_setting.code)
        add("facility", entry.facility_type.system, entry.facility_type.code)
        add("format", entry.format_code.system, entry.format_code.code)
        for code in entry.event_codes:
            add("event", code.system, code.code)
        for code in entry.confidentiality:
            add("security-label", code.system, code.code)
        for related in entry.related:
            identifier = related.get("identifier") or {}
            add("related", identifier.get("system"), identifier.get("value"))
        for author in entry.authors:
            for family in author.family:
                add("author.family", None, self.string_hash("author.family", normalise_name(family)))
            for given in author.given:
                add("author.given", None, self.string_hash("author.given", normalise_name(given)))
        return rows

    def string_hash(self, param: str, normalised: str) -> str:
        return self._keyring.index_hash(param, normalised)

    def provide_many(self, items: list[BatchItem], *, within: Callable[[Connection, list], None] | None = None,
                     sealed_bodies: dict[str, Sealed] | None = None, sealed: SealedAhead | None = None) -> list:
        """Many submissions in one transaction (see `provide_many` below). `sealed_bodies`: entry id →
        the body as `seal_body` sealed it beforehand (outside the transaction); `sealed`: metadata and
        submission sets sealed beforehand the same way; whatever is missing is sealed here."""
        return provide_many(self, items, within, sealed_bodies or {}, sealed)

    def seal_body(self, document: NewDocument) -> Sealed:
        """A document's body sealed under its own data key, bound to its entry id and uniqueId."""
        return self._keyring.seal(document.content, _body_context(document.entry.entry_id, document.entry.unique_id))

    def seal_metadata(self, document: NewDocument, *, patient_pid: str, submission_set_id: str) -> Sealed | None:
        """The metadata a batch provide stores for a document naming no other one, sealed ahead (outside
        the transaction); None for a document with relations, whose targets the transaction resolves."""
        if document.relations:
            return None
        return self._keyring.seal(orjson.dumps(_batch_entry(document, patient_pid, submission_set_id, [])),
                                  _metadata_context(document.entry.entry_id, document.entry.unique_id))

    def seal_submission_set(self, submission: Submission, *, patient_pid: str) -> Sealed:
        """A submission set as a batch provide stores it, sealed ahead (outside the transaction)."""
        subset = replace(submission.submission_set, patient_pid=patient_pid)
        return self._keyring.seal(orjson.dumps(subset), _set_context(subset.submission_set_id, subset.unique_id))

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
                    opened[row[0]] = self._open_entry(_SealedRow(*row[:6]))
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
            connection = getattr(self._version_reader, "connection", None)
            if connection is None:
                pooled = self._engine.raw_connection()  # opened with the engine's pragmas
                pooled.detach()
                connection = self._version_reader.connection = pooled.dbapi_connection
            rows = connection.execute(_VERSION_SQL, (pid,)).fetchall()
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

    # -- retrieve -----------------------------------------------------------------------------
    def named_entry(self, *, entry_id: str | None = None, unique_id: str | None = None) -> DocumentEntry | None:
        """The entry a request names by logical id or by uniqueId (a relation's target), opened, or
        None. Whether the caller may name it is the use-case layer's decision, not the store's."""
        column, key = (document_entry.c.id, entry_id) if entry_id else (document_entry.c.unique_id, unique_id)
        if not key:
            return None
        with self._engine.connect() as connection:
            row = connection.execute(
                select(document_entry.c.id, document_entry.c.unique_id, document_entry.c.status,
                       document_entry.c.patient_pid, document_entry.c.sealed_key, document_entry.c.sealed)
                .where(column == key)
            ).one_or_none()
        return None if row is None else replace(self._open_entry(row), patient_pid=row.patient_pid)

    def get_entry(self, entry_id: str) -> DocumentEntry | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(document_entry.c.id, document_entry.c.unique_id, document_entry.c.status,
                       document_entry.c.sealed_key, document_entry.c.sealed, document_entry.c.version)
                .where(document_entry.c.id == entry_id)
            ).one_or_none()
        return None if row is None else self._open_entry(row)

    def entry_for_unique_id(self, unique_id: str) -> DocumentEntry | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(document_entry.c.id, document_entry.c.unique_id, document_entry.c.status,
                       document_entry.c.sealed_key, document_entry.c.sealed)
                .where(document_entry.c.unique_id == unique_id)
            ).one_or_none()
        return None if row is None else self._open_entry(row)

    def read_content(self, entry: DocumentEntry) -> bytes:
        """The document's bytes, decrypted and checked against the hash recorded at provide time."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(document_body.c.sealed_key, document_body.c.sealed)
                .where(document_body.c.entry_id == entry.entry_id)
            ).one_or_none()
        if row is None:
            raise IntegrityFailure(f"the content of document {entry.entry_id} is missing from the repository")
        try:
            content = self._keyring.open(Sealed(row.sealed_key, row.sealed),
                                         _body_context(entry.entry_id, entry.unique_id))
        except DecryptionFailed as exc:
            raise IntegrityFailure(f"the content of document {entry.entry_id} does not decrypt") from exc
        if hashlib.sha1(content).hexdigest() != entry.sha1 or len(content) != entry.size:
            raise IntegrityFailure(f"the content of document {entry.entry_id} does not match its recorded hash")
        return content

    def _open_entry(self, row) -> DocumentEntry:
        entry = self._opened.get(row.id)
        version = getattr(row, "version", 1)
        if entry is None or entry.unique_id != row.unique_id or entry.version != version:
            try:
                plain = self._keyring.open(Sealed(row.sealed_key, row.sealed),
                                           _metadata_context(row.id, row.unique_id, version))
            except DecryptionFailed as exc:
                raise IntegrityFailure(f"the metadata of document {row.id} does not decrypt") from exc
            entry = DocumentEntry.from_json(orjson.loads(plain))
            if entry.version != version:
                raise IntegrityFailure(f"the metadata of document {row.id} is not its recorded version")
            if len(self._opened) >= OPENED_ENTRIES_CACHED:
                self._opened.clear()
            self._opened[row.id] = entry
        return self._with_status(entry, getattr(row, "status", None))

    @staticmethod
    def _with_status(entry: DocumentEntry, status: str | None) -> DocumentEntry:
        """The status lives in a clear column (it changes); the sealed metadata keeps the first one."""
        return replace(entry, status=status) if status and status != entry.status else entry


def _stored_time(value: datetime | str) -> datetime:
    """A DateTime column as the driver gives it: PostgreSQL a datetime, SQLite the text SQLAlchemy wrote."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def unknown_relation_target(key: str) -> ProfileViolation:
    """The one answer for a relation target that does not exist, is another patient's, or may not be
    named by the submitter: the same status and words, so the answer reveals nothing (no oracle)."""
    return ProfileViolation(f"relatesTo target {key} is not a document of this patient",
                            location="DocumentReference.relatesTo.target")


# -- CH:MHD-1 ----------------------------------------------------------------------------------
class MetadataVersions:
    """Metadata updates of stored entries: a new sealed version on the row, the replaced one kept in
    `document_entry_version`. Lives beside the store (same keyring, same contexts) and is its only
    other writer of `document_entry`."""

    def __init__(self, store: DatabaseDocumentStore):
        self._store = store

    def update(self, entry: DocumentEntry, *, status: str,
               within: Callable[[Connection, list[DocumentEntry]], None] | None = None) -> DocumentEntry:
        return self.update_all([(entry, status)], within=within)[0]

    def update_all(self, changes: list[tuple[DocumentEntry, str]],
                   within: Callable[[Connection, list[DocumentEntry]], None] | None = None) -> list[DocumentEntry]:
        """Store each entry (the whole new metadata, same id and uniqueId) as its next version with the
        clear status given (current, superseded or deleted), all in one transaction or none. The version
        each replaces must still be the row's (else Conflict: someone updated it meanwhile). `within`
        runs before the commit with the stored entries (the audit records that prove the change)."""
        store = self._store
        stored: list[DocumentEntry] = []
        with store._engine.begin() as connection:
            for entry, status in changes:
                stored.append(self._update_one(connection, entry, status))
            if within is not None:
                within(connection, stored)
        for entry in stored:
            store._opened.pop(entry.entry_id, None)
        return stored

    def _update_one(self, connection: Connection, entry: DocumentEntry, status: str) -> DocumentEntry:
        store = self._store
        statement = (select(document_entry.c.id, document_entry.c.unique_id, document_entry.c.status,
                            document_entry.c.version, document_entry.c.sealed_key, document_entry.c.sealed)
                     .where(document_entry.c.id == entry.entry_id))
        if connection.dialect.name == "postgresql":
            statement = statement.with_for_update()
        row = connection.execute(statement).one_or_none()
        if row is None or row.unique_id != entry.unique_id:
            raise Conflict(f"document {entry.entry_id} is not stored with uniqueId {entry.unique_id}")
        if row.version != entry.version:
            raise Conflict(f"document {entry.entry_id} was updated meanwhile (now version {row.version})",
                           location="DocumentReference.meta.versionId")
        updated = replace(entry, version=row.version + 1, status=status)
        sealed = store._keyring.seal(json.dumps(updated.to_json()).encode(),
                                     _metadata_context(row.id, row.unique_id, updated.version))
        done = connection.execute(
            update(document_entry)
            .where(document_entry.c.id == row.id, document_entry.c.version == row.version)
            .values(status=status, confidentiality=updated.confidentiality_level, date=instant(updated.date),
                    period_start=instant(updated.service_start), period_end=instant(updated.service_stop),
                    version=updated.version, sealed_key=sealed.wrapped_key, sealed=sealed.ciphertext))
        if done.rowcount != 1:
            raise Conflict(f"document {entry.entry_id} was updated meanwhile",
                           location="DocumentReference.meta.versionId")
        # The old version is kept only after the compare-and-set won: on SQLite the SELECT above runs
        # before the write lock is taken (the transaction begins at the first write), so a concurrent
        # update may have committed since; the UPDATE's WHERE is the check that cannot race.
        connection.execute(insert(document_entry_version).values(
            id=f"{row.id}|{row.version}", entry_id=row.id, version=row.version, status=row.status,
            replaced_at=datetime.now(UTC).replace(tzinfo=None), sealed_key=row.sealed_key, sealed=row.sealed))
        connection.execute(document_token.delete().where(document_token.c.entry_id == row.id))
        tokens = store._tokens(updated)
        if tokens:
            connection.execute(insert(document_token), tokens)
        return updated

    def written_at(self, entry: DocumentEntry) -> datetime | None:
        """When this version of the entry was stored (meta.lastUpdated): version 1 when its submission
        set was, a later one when it replaced the one before (that row's `replaced_at`). One primary-key
        read; reads and updates ask it, searches do not."""
        with self._store._engine.connect() as connection:
            if entry.version > 1:
                return connection.execute(select(document_entry_version.c.replaced_at).where(
                    document_entry_version.c.id == f"{entry.entry_id}|{entry.version - 1}")).scalar_one_or_none()
            if entry.submission_set_id is None:
                return None
            return connection.execute(select(submission_set.c.submitted_at).where(
                submission_set.c.id == entry.submission_set_id)).scalar_one_or_none()

    def history(self, entry_id: str) -> list[DocumentEntry]:
        """Every version of an entry, oldest first, the current one last (empty if unknown)."""
        store = self._store
        with store._engine.connect() as connection:
            old = connection.execute(
                select(document_entry_version.c.version, document_entry_version.c.status,
                       document_entry_version.c.sealed_key, document_entry_version.c.sealed)
                .where(document_entry_version.c.entry_id == entry_id).order_by(document_entry_version.c.version)
            ).all()
        current = store.get_entry(entry_id)
        if current is None:
            return []
        versions = []
        for row in old:
            try:
                plain = store._keyring.open(Sealed(row.sealed_key, row.sealed),
                                            _metadata_context(entry_id, current.unique_id, row.version))
            except DecryptionFailed as exc:
                raise IntegrityFailure(f"version {row.version} of document {entry_id} does not decrypt") from exc
            versions.append(replace(DocumentEntry.from_json(orjson.loads(plain)), status=row.status))
        return [*versions, current]


def _jsonable(value) -> dict:
    return asdict(value)


# -- many submissions in one transaction ------------------------------------------------------------


@dataclass
class _Known:
    """What the batch knows of a uniqueId: stored before the batch or accepted earlier in it."""

    entry_id: str
    patient_pid: str
    sha1: str
    status: str


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


class SealedAhead(NamedTuple):
    """What a batch provide sealed before its transaction: entry id → metadata (`seal_metadata`),
    submission set id → submission set (`seal_submission_set`)."""

    metadata: dict[str, Sealed]
    submission_sets: dict[str, Sealed]


def _batch_entry(document: NewDocument, patient_pid: str, submission_set_id: str, relations: list) -> DocumentEntry:
    """The entry as a batch provide seals and stores it."""
    return replace(document.entry, patient_pid=patient_pid, relations=relations, submission_set_id=submission_set_id)


def _set_context(submission_set_id: str, unique_id: str) -> str:
    return f"submission-set|{submission_set_id}|{unique_id}"


class BatchItem(NamedTuple):
    submission: Submission
    patient_pid: str


class _BatchProvide:
    """One batch inside one transaction. Every check a single provide makes is made here up front
    (existing copies, used submission-set uniqueIds, relation targets) in a few IN-list queries, and
    each submission is decided in memory against that state plus what the batch accepted before it,
    so a refused submission leaves nothing behind and does not touch the others (no savepoints)."""

    def __init__(self, store: DatabaseDocumentStore, connection: Connection, items: list[BatchItem],
                 sealed_bodies: dict[str, Sealed] | None = None, sealed: SealedAhead | None = None):
        self.store = store
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
                    stored = self.store._open_entry(row)
                    self.by_unique_id[row.unique_id] = _Known(row.id, row.patient_pid, stored.sha1, row.status)
                    self.by_entry_id[row.id] = row.unique_id
        for chunk in in_chunks(sorted(set_ids)):
            sql = f"SELECT unique_id FROM submission_set WHERE unique_id IN {in_list(len(chunk))}"
            self.sets_taken.update(unique_id for unique_id, in self._select(sql, chunk))

    def _select(self, sql: str, params: list) -> list[tuple]:
        return self.connection.exec_driver_sql(for_driver(sql, self.dialect), tuple(params)).all()

    def decide(self, submission: Submission, patient_pid: str) -> ProvideResult:
        """The submission's result, or the RecordError a single provide would raise; its rows are
        added to the batch only when every document of it passed."""
        rows = _BatchRows()
        accepted: dict[str, _Known] = {}
        provided: list[ProvidedDocument] = []
        new_documents: list[NewDocument] = []
        for document in submission.documents:
            unique_id = document.entry.unique_id
            known = accepted.get(unique_id) or self.by_unique_id.get(unique_id)
            if known is not None:
                if known.sha1 != document.entry.sha1 or known.patient_pid != patient_pid:
                    raise Conflict(f"document uniqueId {unique_id} is already stored with other content",
                                   location="DocumentReference.masterIdentifier")
                provided.append(ProvidedDocument(known.entry_id, created=False))
                continue
            accepted[unique_id] = _Known(document.entry.entry_id, patient_pid, document.entry.sha1, "current")
            new_documents.append(document)
            provided.append(ProvidedDocument(document.entry.entry_id, created=True))
        if not new_documents:
            # A resubmission: answer with the set that first stored it (in this batch or before).
            first = provided[0].entry_id
            submission_set_id = self.set_of.get(first) or self.store._submission_set_of(self.connection, first)
            return ProvideResult(submission_set_id, tuple(provided))
        subset = replace(submission.submission_set, patient_pid=patient_pid)
        if subset.unique_id in self.sets_taken:
            raise Conflict(f"SubmissionSet uniqueId {subset.unique_id} was already used for other documents",
                           location="List.identifier")
        sealed = (self.sealed.submission_sets.get(subset.submission_set_id)
                  or self.store._keyring.seal(orjson.dumps(subset), _set_context(subset.submission_set_id,
                                                                                 subset.unique_id)))
        rows.sets.append((subset.submission_set_id, subset.unique_id, patient_pid, subset.source_id,
                          driver_datetime(datetime.now(UTC).replace(tzinfo=None), self.dialect),
                          sealed.wrapped_key, sealed.ciphertext))
        rows.patients.add(patient_pid)
        replaced_here: dict[str, str] = {}
        for document in new_documents:
            relations = [self._relation(pending, patient_pid, accepted, replaced_here) for pending in document.relations]
            self._document_rows(rows, document, patient_pid, subset.submission_set_id, relations)
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
        if known is None or known.patient_pid != patient_pid:
            raise ProfileViolation(f"relatesTo target {key} is not a document of this patient",
                                   location="DocumentReference.relatesTo.target")
        if pending.code == "replaces":
            if known.status != "current" or known.entry_id in replaced_here:
                status = "superseded" if known.entry_id in replaced_here else known.status
                raise Conflict(f"document {key} is {status} and cannot be replaced again",
                               location="DocumentReference.relatesTo")
            replaced_here[known.entry_id] = unique_id
        return Relation(pending.code, known.entry_id)

    def _document_rows(self, rows: _BatchRows, document: NewDocument, patient_pid: str, submission_set_id: str,
                       relations: list[Relation]) -> None:
        keyring = self.store._keyring
        entry = _batch_entry(document, patient_pid, submission_set_id, relations)
        # Sealed ahead when it names no other document (the same entry: see `seal_metadata`).
        # orjson writes a dataclass as `asdict` would (the same JSON `from_json` reads), many times faster.
        metadata = (None if relations else self.sealed.metadata.get(entry.entry_id)) or keyring.seal(
            orjson.dumps(entry), _metadata_context(entry.entry_id, entry.unique_id))
        body = self.sealed_bodies.get(entry.entry_id) or self.store.seal_body(document)
        self.seq += 1
        dialect = self.dialect
        rows.entries.append((
            entry.entry_id, entry.unique_id, patient_pid, entry.status, entry.confidentiality_level,
            _driver_instant(entry.date, dialect), _driver_instant(entry.service_start, dialect),
            _driver_instant(entry.service_stop, dialect), submission_set_id, self.seq,
            metadata.wrapped_key, metadata.ciphertext))
        rows.tokens.extend((t["entry_id"], t["param"], t["system"], t["value"]) for t in self.store._tokens(entry))
        rows.bodies.append((entry.entry_id, body.wrapped_key, body.ciphertext))
        for relation in relations:
            rows.relations.append((entry.entry_id, relation.target_entry_id, relation.code))
            if relation.code == "replaces":
                rows.superseded.append(relation.target_entry_id)

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


class _LoadedRow(NamedTuple):
    id: str
    unique_id: str
    patient_pid: str
    status: str
    sealed_key: bytes
    sealed: bytes
    version: int


def _driver_instant(value, dialect: str):
    """A DocumentReference date as `instant` stores it, bound the way SQLAlchemy would."""
    value = instant(value)
    return None if value is None else driver_datetime(value, dialect)


def provide_many(store: DatabaseDocumentStore, items: list[BatchItem],
                 within: Callable[[Connection, list], None] | None = None,
                 sealed_bodies: dict[str, Sealed] | None = None, sealed: SealedAhead | None = None) -> list:
    """Store many submissions in one transaction: for each, its ProvideResult or the RecordError that
    refused it (nothing of a refused one is stored). `within(connection, results)` runs before the
    commit (the audit records, a migration's journal); if it raises, nothing is stored. A unique-key
    race with a concurrent writer is retried once, as for a single provide."""
    try:
        return _provide_many_once(store, items, within, sealed_bodies, sealed)
    except IntegrityError:
        return _provide_many_once(store, items, within, sealed_bodies, sealed)


def _provide_many_once(store: DatabaseDocumentStore, items: list[BatchItem], within, sealed_bodies=None,
                       sealed=None) -> list:
    with store._engine.begin() as connection:
        batch = _BatchProvide(store, connection, items, sealed_bodies, sealed)
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


_VERSION_SQL = "SELECT version FROM document_version WHERE patient_pid = ?"
_BUMP_SQL = ("INSERT INTO document_version (patient_pid, version) VALUES (?, 1) "
             "ON CONFLICT (patient_pid) DO UPDATE SET version = document_version.version + 1")


def bump_document_versions(connection: Connection, pids: list[str]) -> None:
    """Inside the change's transaction: the version moves exactly when the documents do."""
    if pids:
        connection.exec_driver_sql(for_driver(_BUMP_SQL, connection.dialect.name), [(pid,) for pid in pids])
