"""The document registry and repository on SQLAlchemy (SQLite or PostgreSQL), encrypted at rest.

Each entry's metadata (the whole `DocumentEntry`) and body are sealed separately, each under its own
data key, with the entry id and uniqueId bound as associated data. What MHD searches on is indexed in
the clear in `document_entry`/`document_token`, author names as keyed hashes.
"""

from __future__ import annotations

import hashlib
import json
import time

import orjson
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapters.cara.crypto import DecryptionFailed, Keyring, Sealed
from adapters.cara.errors import Conflict, IntegrityFailure, ProfileViolation
from adapters.cara.fhir_dates import instant
from adapters.cara.mhd_search import DocumentQuery, normalise_name
from adapters.cara.model import DocumentEntry, NewDocument, Relation, Submission
from adapters.cara.store import search_sql
from adapters.cara.store.schema import (
    document_body,
    document_entry,
    document_relation,
    document_token,
    submission_set,
)


class _SealedRow(NamedTuple):
    id: str
    unique_id: str
    status: str
    sealed_key: bytes
    sealed: bytes


@dataclass(frozen=True)
class ProvidedDocument:
    entry_id: str
    created: bool  # False: the same uniqueId with the same bytes was already stored


@dataclass(frozen=True)
class ProvideResult:
    submission_set_id: str
    documents: tuple[ProvidedDocument, ...]


def _metadata_context(entry_id: str, unique_id: str) -> str:
    return f"entry-metadata|{entry_id}|{unique_id}"


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
                                    f"submission-set|{subset.submission_set_id}|{subset.unique_id}")
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
            submission_set_id=submission_set_id, created_seq=time.time_ns(),
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

    # -- find ---------------------------------------------------------------------------------
    def search(self, query: DocumentQuery) -> tuple[int, list[DocumentEntry]]:
        """(total, the page of entries) for one patient and the patients merged into it, newest first.
        Plain SQL on the driver's connection: see `search_sql` for why."""
        dialect = self._engine.dialect.name
        statements = search_sql.build(query, dialect=dialect)
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(statements.count_sql, statements.params)
            total = cursor.fetchone()[0]
            page: list[tuple[str, str]] = []
            if total > query.offset:
                cursor.execute(statements.page_sql, (*statements.params, query.count, query.offset))
                page = cursor.fetchall()
            opened = {entry_id: self._opened.get(entry_id) for entry_id, _ in page}
            missing = [entry_id for entry_id, entry in opened.items() if entry is None]
            if missing:
                cursor.execute(search_sql.rows_sql(len(missing), dialect=dialect), missing)
                for row in cursor.fetchall():
                    opened[row[0]] = self._open_entry(_SealedRow(*row))
            cursor.close()
        finally:
            connection.close()  # back to the pool (which ends the read transaction)
        return total, [self._with_status(opened[entry_id], status) for entry_id, status in page]

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
                       document_entry.c.sealed_key, document_entry.c.sealed)
                .where(document_entry.c.id == entry_id)
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
        if entry is None or entry.unique_id != row.unique_id:
            try:
                plain = self._keyring.open(Sealed(row.sealed_key, row.sealed),
                                           _metadata_context(row.id, row.unique_id))
            except DecryptionFailed as exc:
                raise IntegrityFailure(f"the metadata of document {row.id} does not decrypt") from exc
            entry = DocumentEntry.from_json(orjson.loads(plain))
            if len(self._opened) >= OPENED_ENTRIES_CACHED:
                self._opened.clear()
            self._opened[row.id] = entry
        return self._with_status(entry, getattr(row, "status", None))

    @staticmethod
    def _with_status(entry: DocumentEntry, status: str | None) -> DocumentEntry:
        """The status lives in a clear column (it changes); the sealed metadata keeps the first one."""
        return replace(entry, status=status) if status and status != entry.status else entry


def unknown_relation_target(key: str) -> ProfileViolation:
    """The one answer for a relation target that does not exist, is another patient's, or may not be
    named by the submitter: the same status and words, so the answer reveals nothing (no oracle)."""
    return ProfileViolation(f"relatesTo target {key} is not a document of this patient",
                            location="DocumentReference.relatesTo.target")


def _jsonable(value) -> dict:
    return asdict(value)
