"""CH:MHD-1 in the store: metadata updates of stored entries. Each update seals the whole new metadata
on the row as its next version (bound to that version, see `sealed_entries`) and keeps the replaced
sealed blob, unchanged, in `document_entry_version`. The store's only other writer of `document_entry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select, update

from adapters.cara.crypto import Keyring
from adapters.cara.errors import Conflict
from adapters.cara.dates import instant
from adapters.cara.model import DocumentEntry
from adapters.cara.store.schema import document_entry, document_entry_version, document_token, submission_set
from adapters.cara.store.sealed_entries import SealedEntry, index_tokens, open_entry, seal_entry


class MetadataVersions:
    """`current(entry_id)`: the store's reader of an entry as it is now; `forget(entry_id)`: drops what
    the store's process keeps opened of an entry that changed."""

    def __init__(self, *, engine: Engine, keyring: Keyring, current: Callable[[str], DocumentEntry | None],
                 forget: Callable[[str], None]):
        self._engine = engine
        self._keyring = keyring
        self._current = current
        self._forget = forget

    def update(self, entry: DocumentEntry, *, status: str,
               within: Callable[[Connection, list[DocumentEntry]], None] | None = None) -> DocumentEntry:
        return self.update_all([(entry, status)], within=within)[0]

    def update_all(self, changes: list[tuple[DocumentEntry, str]],
                   within: Callable[[Connection, list[DocumentEntry]], None] | None = None) -> list[DocumentEntry]:
        """Store each entry (the whole new metadata, same id and uniqueId) as its next version with the
        clear status given (current, superseded or deleted), all in one transaction or none. The version
        each replaces must still be the row's (else Conflict: someone updated it meanwhile). `within`
        runs before the commit with the stored entries (the audit records that prove the change)."""
        stored: list[DocumentEntry] = []
        with self._engine.begin() as connection:
            for entry, status in changes:
                stored.append(self._update_one(connection, entry, status))
            if within is not None:
                within(connection, stored)
        for entry in stored:
            self._forget(entry.entry_id)
        return stored

    def _update_one(self, connection: Connection, entry: DocumentEntry, status: str) -> DocumentEntry:
        statement = (select(document_entry.c.id, document_entry.c.unique_id, document_entry.c.status,
                            document_entry.c.version, document_entry.c.patient_pid, document_entry.c.sealed_key,
                            document_entry.c.sealed)
                     .where(document_entry.c.id == entry.entry_id))
        if connection.dialect.name == "postgresql":
            statement = statement.with_for_update()
        row = connection.execute(statement).one_or_none()
        if row is None or row.unique_id != entry.unique_id:
            raise Conflict(f"document {entry.entry_id} is not stored with uniqueId {entry.unique_id}")
        if row.version != entry.version:
            raise Conflict(f"document {entry.entry_id} was updated meanwhile (now version {row.version})",
                           location="DocumentReference.meta.versionId")
        # The document's own patient, whatever record the caller filed it under (a merge never rewrites it).
        updated = replace(entry, version=row.version + 1, status=status, patient_pid=row.patient_pid)
        sealed = seal_entry(self._keyring, updated)
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
        tokens = index_tokens(self._keyring, updated)
        if tokens:
            connection.execute(insert(document_token), tokens)
        return updated

    def written_at(self, entry: DocumentEntry) -> datetime | None:
        """When this version of the entry was stored (meta.lastUpdated): version 1 when its submission
        set was, a later one when it replaced the one before (that row's `replaced_at`). One primary-key
        read; reads and updates ask it, searches do not."""
        with self._engine.connect() as connection:
            if entry.version > 1:
                return connection.execute(select(document_entry_version.c.replaced_at).where(
                    document_entry_version.c.id == f"{entry.entry_id}|{entry.version - 1}")).scalar_one_or_none()
            if entry.submission_set_id is None:
                return None
            return connection.execute(select(submission_set.c.submitted_at).where(
                submission_set.c.id == entry.submission_set_id)).scalar_one_or_none()

    def history(self, entry_id: str) -> list[DocumentEntry]:
        """Every version of an entry, oldest first, the current one last (empty if unknown)."""
        with self._engine.connect() as connection:
            old = connection.execute(
                select(document_entry_version.c.version, document_entry_version.c.status,
                       document_entry_version.c.sealed_key, document_entry_version.c.sealed)
                .where(document_entry_version.c.entry_id == entry_id).order_by(document_entry_version.c.version)
            ).all()
        current = self._current(entry_id)
        if current is None:
            return []
        versions = [open_entry(self._keyring, SealedEntry(entry_id, current.unique_id, row.status, row.sealed_key,
                                                          row.sealed, row.version))
                    for row in old]
        return [*(replace(v, status=row.status) for v, row in zip(versions, old, strict=True)), current]
