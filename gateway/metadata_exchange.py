"""CH:MHD-1 Update Document Metadata as a use-case: who may change which metadata of a stored entry.

Every change is a new metadata version (the replaced one is kept, see `store.documents.MetadataVersions`),
decided by the PDP, recorded in the same transaction as CH:MHD-1 with the patient's trail entry
(ATC_DOC_UPDATE, or ATC_DOC_DELETE when a document administrator deletes), and followed by a bump of
the patient's search pages. The HTTP face (PUT DocumentReference, a Bundle of PUTs) and the patient's
page call the same methods.

Which document may be named: one the principal may read (the PDP's read decision at the entry's
level, as `Exchange._readable_entry` asks) or, for a document administrator, one it may administer.
Any other answers 404 exactly like a document that does not exist, so a refusal reveals nothing.
"""

from __future__ import annotations

from dataclasses import replace

from adapters.cara.errors import InvalidInput, NotFound
from adapters.cara.model import DocumentEntry
from adapters.cara.store.documents import DatabaseDocumentStore, MetadataVersions
from adapters.cara.store.patients import DatabasePatientIndex
from consent.pdp import LEVELS
from consent.principal import Principal
from gateway.access import AccessControl
from gateway.auditing import Auditor, audited
from gateway.search_pages import NoSearchPages, SearchPages

TRANSACTION = "CH:MHD-1"


class MetadataExchange:
    def __init__(self, *, documents: DatabaseDocumentStore, patients: DatabasePatientIndex, access: AccessControl,
                 auditor: Auditor, pages: SearchPages | None = None):
        self.documents = documents
        self.versions = MetadataVersions(documents)
        self.patients = patients
        self.access = access
        self.auditor = auditor
        self.pages = pages or NoSearchPages()

    @audited(TRANSACTION)
    def change_confidentiality(self, *, principal: Principal, entry_id: str, level: str) -> DocumentEntry:
        """The patient's right (or their representative's, under a 303 in force) to label one of their
        documents normal, restricted or secret. Returns the entry as now stored."""
        if level not in LEVELS:
            raise InvalidInput(f"confidentiality must be one of {', '.join(LEVELS)}, not {level!r}",
                               location="DocumentReference.securityLabel")
        entry, spid = self.changeable_entry(principal, entry_id)
        self.access.require(principal, spid=spid, pid=entry.patient_pid, action="change-confidentiality")
        return self.store_version(principal, entry, entry.with_confidentiality_level(level), spid=spid)

    def history(self, *, principal: Principal, entry_id: str) -> list[DocumentEntry]:
        """Every metadata version of a document the principal may read, oldest first."""
        entry, _ = self.changeable_entry(principal, entry_id)
        return self.versions.history(entry.entry_id)

    # -- shared by the FHIR face (metadata_update.py) -----------------------------------------
    def changeable_entry(self, principal: Principal, entry_id: str) -> tuple[DocumentEntry, str]:
        """(entry, its patient's SPID), or NotFound for a missing, deleted or unreadable document."""
        entry = self.documents.get_entry(entry_id)
        if entry is not None:
            entry = replace(entry, patient_pid=self.patients.surviving_pid(entry.patient_pid))
        record = self.patients.get(entry.patient_pid) if entry else None
        if entry is None or record is None or record.spid is None or entry.status == "deleted":
            raise NotFound(f"DocumentReference/{entry_id} is not known")
        if principal.role == "DADM":
            decision = self.access.decide(principal, spid=record.spid, pid=entry.patient_pid,
                                          action="administer-metadata")
        else:
            decision = self.access.decide(principal, spid=record.spid, pid=entry.patient_pid, action="read",
                                          confidentiality=entry.confidentiality_level)
        if not decision.permit:
            refusal = NotFound(f"DocumentReference/{entry_id} is not known")
            self.auditor.failure(TRANSACTION, principal, refusal, atc_code="ATC_DOC_UPDATE",
                                 patient_spid=record.spid, documents=(self.auditor.document(entry),))
            raise refusal
        return entry, record.spid

    def store_version(self, principal: Principal, current: DocumentEntry, new: DocumentEntry, *, spid: str,
                      status: str | None = None) -> DocumentEntry:
        """Store `new` as the next version of `current` with its audit record in the same transaction;
        `status` "deleted" removes it from searches and reads (ATC_DOC_DELETE)."""
        status = status or current.status
        atc_code = "ATC_DOC_DELETE" if status == "deleted" else "ATC_DOC_UPDATE"
        new = replace(new, version=current.version, patient_pid=current.patient_pid)

        def audit_in_transaction(connection, stored: DocumentEntry) -> None:
            record = self.auditor.record(TRANSACTION, principal, atc_code=atc_code,
                                         action="D" if status == "deleted" else "U", patient_spid=spid,
                                         documents=(self.auditor.document(stored),))
            self.auditor.write(connection, [record])

        stored = self.versions.update(new, status=status, within=audit_in_transaction)
        self.pages.documents_changed(current.patient_pid)
        return replace(stored, patient_pid=current.patient_pid)
