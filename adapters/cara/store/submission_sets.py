"""Submission sets as the record keeps them, read back: what a SubmissionSet List (ITI-66, `List/{id}`)
is made of — the set's own metadata (sealed, opened here) and its live documents (clear columns: id,
uniqueId, patient, status, confidentiality; no document is opened).

The store decides no consent: which documents of a set a principal may see is the use-case layer's
decision (`gateway/exchanges/document_lists.py`). A deleted document (CH:MHD-1, DADM) is never part
of the answer, as it is never found by ITI-67.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Engine, select

from adapters.cara.crypto import Keyring, Sealed
from adapters.cara.model import SubmissionSet
from adapters.cara.store.database import in_chunks
from adapters.cara.store.schema import document_entry, submission_set
from adapters.cara.store.sealed_entries import open_submission_set

# Opened sets kept per process: a set's sealed metadata never changes once written.
OPENED_SETS_CACHED = 5_000


class SetDocument(NamedTuple):
    """A live document of a set, as its row has it in the clear."""

    entry_id: str
    unique_id: str
    patient_pid: str  # the document's own patient (never rewritten by a merge)
    status: str  # current | superseded
    confidentiality: str  # normal | restricted | secret (the current one, after CH:MHD-1 changes)


class StoredSet(NamedTuple):
    submission_set: SubmissionSet
    patient_pid: str
    submitted_at: datetime  # when the record stored it (naive UTC)
    documents: tuple[SetDocument, ...]  # in the order they were stored


_SET_COLUMNS = (submission_set.c.id, submission_set.c.unique_id, submission_set.c.patient_pid,
                submission_set.c.submitted_at, submission_set.c.sealed_key, submission_set.c.sealed)
_DOCUMENT_COLUMNS = (document_entry.c.submission_set_id, document_entry.c.id, document_entry.c.unique_id,
                     document_entry.c.patient_pid, document_entry.c.status, document_entry.c.confidentiality)


class DatabaseSubmissionSets:
    def __init__(self, *, engine: Engine, keyring: Keyring):
        self._engine = engine
        self._keyring = keyring
        self._opened: dict[str, SubmissionSet] = {}
        self._lock = threading.Lock()

    def get(self, set_id: str) -> StoredSet | None:
        """One set by its id (the location ITI-65 answers), with its live documents; None if unknown."""
        with self._engine.connect() as connection:
            row = connection.execute(select(*_SET_COLUMNS).where(submission_set.c.id == set_id)).one_or_none()
            if row is None:
                return None
            documents = connection.execute(
                select(*_DOCUMENT_COLUMNS).where(document_entry.c.submission_set_id == set_id,
                                                 document_entry.c.status != "deleted")
                .order_by(document_entry.c.created_seq)).all()
        return self._stored(row, [SetDocument(*d[1:]) for d in documents])

    def of_patients(self, pids: Sequence[str]) -> list[StoredSet]:
        """Every set of these patients (a merged record's), with its live documents, the newest first
        (the time the record stored it, then the id). A set whose documents were all deleted comes with
        none."""
        rows, documents = [], {}
        with self._engine.connect() as connection:
            for chunk in in_chunks(sorted(set(pids))):
                rows += connection.execute(select(*_SET_COLUMNS).where(submission_set.c.patient_pid.in_(chunk))).all()
                for document in connection.execute(
                        select(*_DOCUMENT_COLUMNS).where(document_entry.c.patient_pid.in_(chunk),
                                                         document_entry.c.status != "deleted")
                        .order_by(document_entry.c.created_seq)):
                    documents.setdefault(document[0], []).append(SetDocument(*document[1:]))
        rows.sort(key=lambda row: (row.submitted_at, row.id), reverse=True)
        return [self._stored(row, documents.get(row.id, [])) for row in rows]

    def _stored(self, row, documents: list[SetDocument]) -> StoredSet:
        opened = self._opened.get(row.id)
        if opened is None or opened.unique_id != row.unique_id:
            opened = open_submission_set(self._keyring, row.id, row.unique_id, Sealed(row.sealed_key, row.sealed))
            with self._lock:
                if len(self._opened) >= OPENED_SETS_CACHED:
                    self._opened.clear()
                self._opened[row.id] = opened
        return StoredSet(opened, row.patient_pid, _stored_time(row.submitted_at), tuple(documents))


def _stored_time(value: datetime | str) -> datetime:
    """A DateTime column as the driver gives it (SQLAlchemy hands SQLite's text back as a datetime)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
