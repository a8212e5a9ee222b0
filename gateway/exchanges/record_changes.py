"""Who else must know, in the same transaction, that the record's documents changed.

Documents enter the record through one seam (`batch_provide`: ITI-65 as a batch of one, the HL7 v2
bridge, the migration) and their metadata changes through one door (`metadata.MetadataExchange`:
CH:MHD-1 updates, the DADM's deletions, the patient's relabelling). Each calls its participants
here inside the transaction that makes the change, after the change's audit records and before the
commit, with what was stored in its stored form. A participant writes its own rows on that
connection (a community outbox: one delivery row per configured community), so they commit with
the documents or not at all; if it raises, the whole change rolls back and the caller answers as
for any failed store (the documents are not stored, nothing is half-done).

A participant must be quick and must not commit, open another transaction on the same rows, or
call back into the exchanges. Its failure is not about the documents (they were fine): it surfaces as
`ParticipantFailed` (the database being unreachable surfaces as itself: a dependency failure), which
every face treats as the gateway's own failure (`failures.py`) — ITI-65 answers 500, the bridge "send it
again" (AR), the migration holds the document sealed for `migrate retry` — and never as a refusal of
the documents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from adapters.cara.model import DocumentEntry, SubmissionSet
from consent.principal import Principal


@dataclass(frozen=True)
class StoredDocument:
    """A document as this transaction stored it: its entry with the patient (MPI-PID), the level it
    was stored with (raised to the provide level), its provenance and submitter, its relations
    resolved to the entry ids they name and its submission set; and its bytes."""

    entry: DocumentEntry
    content: bytes


@dataclass(frozen=True)
class StoredSubmission:
    """One submission's documents created by this transaction (a document found already stored with
    the same bytes is not among them: it was stored, and announced, before)."""

    principal: Principal
    spid: str  # the EPR-SPID of the patient it was filed under (the surviving one of a merged record)
    submission_set: SubmissionSet  # as stored (its patient the MPI-PID)
    documents: tuple[StoredDocument, ...]


@dataclass(frozen=True)
class ChangedEntry:
    """One CH:MHD-1 change: the entry before and as now stored (its next version; status `deleted`
    for a document administrator's deletion)."""

    principal: Principal
    spid: str
    previous: DocumentEntry
    stored: DocumentEntry


STORE_DOWN = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


class ParticipantFailed(RuntimeError):
    """A participant could not record the change (e.g. the outbox rows): nothing of it is stored."""


DocumentsStored = Callable[[Connection, Sequence[StoredSubmission]], None]
MetadataChanged = Callable[[Connection, Sequence[ChangedEntry]], None]


class RecordChanges:
    def __init__(self) -> None:
        self._stored: list[DocumentsStored] = []
        self._changed: list[MetadataChanged] = []

    def on_documents_stored(self, participant: DocumentsStored) -> None:
        self._stored.append(participant)

    def on_metadata_changed(self, participant: MetadataChanged) -> None:
        self._changed.append(participant)

    @property
    def wants_documents(self) -> bool:
        """Whether anyone takes part (the seam builds the stored forms only then: the hot path)."""
        return bool(self._stored)

    def documents_stored(self, connection: Connection, stored: Sequence[StoredSubmission]) -> None:
        """Called by the provide seam in its transaction when it created documents."""
        for participant in self._stored:
            _call(participant, connection, stored)

    def metadata_changed(self, connection: Connection, changed: Sequence[ChangedEntry]) -> None:
        """Called by the metadata door in its transaction when it stored new versions."""
        for participant in self._changed:
            _call(participant, connection, changed)


def _call(participant: Callable, connection: Connection, told: Sequence) -> None:
    try:
        participant(connection, told)
    except STORE_DOWN:
        raise  # the store itself cannot be reached: answered as the store being down (503, AR, a stop)
    except Exception as error:  # anything else, a constraint of its own table included: not the documents'

        raise ParticipantFailed(f"the change could not be recorded by {getattr(participant, '__qualname__', '?')}: "
                                f"{error}") from error
