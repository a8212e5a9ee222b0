"""CH:MHD-1 Update Document Metadata as a use-case: who may change which metadata of a stored entry.

Every change is a new metadata version (the replaced one is kept, see `store.metadata_versions`),
decided by the PDP, recorded in the same transaction as CH:MHD-1 with the patient's trail entry
(ATC_DOC_UPDATE, or ATC_DOC_DELETE when a document administrator deletes), and followed by a bump of
the patient's search pages. The HTTP face (PUT DocumentReference, a Bundle of PUTs) and the patient's
page call the same methods.

Which document may be named: one the principal may read (the PDP's read decision at the entry's
level, as `DocumentExchange._readable_entry` asks) or, for a document administrator, one it may administer.
Any other answers 404 exactly like a document that does not exist, so a refusal reveals nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from adapters.cara import fhir_mapping
from adapters.cara.client_json import DEFAULT_LIMITS, JsonLimits
from adapters.cara.errors import Conflict, InvalidInput, StaleVersion, UnknownDocumentEntry
from adapters.cara.dates import fhir_instant
from adapters.cara.metadata_update import (
    CONFIDENTIALITY,
    DELETION,
    DELETION_REQUESTED,
    DESCRIPTIVE,
    changed_fields,
    deletion_code,
    read_update,
)
from adapters.cara.model import DocumentEntry
from adapters.cara.store.documents import DatabaseDocumentStore
from adapters.cara.store.patients import DatabasePatientIndex
from consent.pdp import LEVELS
from consent.principal import Principal
from consent.roles import PATIENT_SIDE, PROFESSIONAL_AUTHORS, PROFESSIONALS
from gateway.exchanges.access import AccessControl
from gateway.exchanges.auditing import Auditor, audited
from gateway.exchanges.record_changes import ChangedEntry, RecordChanges
from gateway.auth.errors import AccessRefused
from gateway.exchanges.search_pages import NoSearchPages, SearchPages

PROFILE_UPDATE_REQUEST = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-mhd-1-updatedocumentmetadatatransactionrequest"
PROFILE_UPDATE_RESPONSE = ("http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/"
                           "ch-mhd-1-updatedocumentmetadatatransactionresponse")


@dataclass(frozen=True)
class Change:
    """One planned update: decided and checked, not yet stored."""

    current: DocumentEntry
    new: DocumentEntry
    spid: str
    status: str  # the clear status after the update: unchanged, or deleted

    @property
    def atc_code(self) -> str:
        return "ATC_DOC_DELETE" if self.status == "deleted" else "ATC_DOC_UPDATE"


TRANSACTION = "CH-MHD-1"  # its code in urn:e-health-suisse:event-type-code


class MetadataExchange:
    def __init__(self, *, documents: DatabaseDocumentStore, patients: DatabasePatientIndex, access: AccessControl,
                 auditor: Auditor, pages: SearchPages | None = None, json_limits: JsonLimits = DEFAULT_LIMITS,
                 changes: RecordChanges | None = None):
        self.json_limits = json_limits
        self.changes = changes or RecordChanges()  # told in the transaction what each change stored
        self.documents = documents
        self.versions = documents.versions
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

    @audited(TRANSACTION)
    def update_reference(self, *, principal: Principal, entry_id: str, body: bytes, base_url: str,
                         if_match: int | None = None) -> dict[str, Any]:
        """PUT [base]/DocumentReference/<id> (CH:MHD-1 as the IG's page shows it): the updated resource.
        `if_match`: the version the client read (If-Match); another stored version is a 412 and
        nothing is changed. The store checks the version again in the UPDATE, so a concurrent writer
        between the check and the commit is refused too (412 here, 409 without If-Match)."""
        doc = fhir_mapping.parse_resource(body, "DocumentReference", limits=self.json_limits)
        if doc.get("id") not in (None, entry_id):
            raise InvalidInput(f"the DocumentReference's id {doc.get('id')!r} is not the one of the URL ({entry_id})",
                               location="DocumentReference.id")
        plan = self._plan(principal, entry_id, doc, "DocumentReference")
        stale = StaleVersion(f"DocumentReference/{entry_id} is not at version {if_match}: read it again, then "
                             "update", location="If-Match")
        if if_match is not None and plan.current.version != if_match:
            raise stale
        try:
            [stored] = self._apply(principal, [plan], base_url=base_url)
        except Conflict:
            if if_match is None:
                raise
            raise stale from None
        return self._resource(stored, base_url)

    @audited(TRANSACTION)
    def update_bundle(self, *, principal: Principal, bundle: dict[str, Any], base_url: str) -> dict[str, Any]:
        """A CH:MHD-1 transaction Bundle of PUT DocumentReferences: all stored, or none."""
        plans = []
        for i, entry in enumerate(bundle.get("entry") or []):
            doc = entry.get("resource") or {}
            url = (entry.get("request") or {}).get("url", "")
            entry_id = url.split("?", 1)[0].removeprefix("DocumentReference/")
            if not entry_id or "/" in entry_id or doc.get("id") not in (None, entry_id):
                raise InvalidInput("each entry is a PUT of DocumentReference/<id> with that resource",
                                   location=f"Bundle.entry[{i}].request.url")
            plans.append(self._plan(principal, entry_id, doc, f"Bundle.entry[{i}].resource"))
        if len({p.current.entry_id for p in plans}) != len(plans):
            raise InvalidInput("a Bundle updates each DocumentReference once", location="Bundle.entry")
        stored = self._apply(principal, plans, base_url=base_url)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        return {
            "resourceType": "Bundle",
            "meta": {"profile": [PROFILE_UPDATE_RESPONSE]},
            "type": "transaction-response",
            "entry": [{"response": {"status": "200 OK",
                                    "location": f"{base_url}/DocumentReference/{e.entry_id}/_history/{e.version}",
                                    "etag": f'W/"{e.version}"', "lastModified": now}} for e in stored],
        }

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
            raise UnknownDocumentEntry(f"DocumentReference/{entry_id} is not known")
        if principal.role == "DADM":
            decision = self.access.decide(principal, spid=record.spid, pid=entry.patient_pid,
                                          action="administer-metadata")
        else:
            decision = self.access.decide(principal, spid=record.spid, pid=entry.patient_pid, action="read",
                                          confidentiality=entry.confidentiality_level)
        if not decision.permit:
            refusal = UnknownDocumentEntry(f"DocumentReference/{entry_id} is not known")
            document = replace(self.auditor.document(entry), reference=f"DocumentReference/{entry.entry_id}")
            self.auditor.failure(TRANSACTION, principal, refusal, atc_code="ATC_DOC_UPDATE", action="U",
                                 patient_spid=record.spid, documents=(document,))
            raise refusal
        return entry, record.spid

    def store_version(self, principal: Principal, current: DocumentEntry, new: DocumentEntry, *,
                      spid: str) -> DocumentEntry:
        """Store `new` as the next version of `current`, with its audit record in the same transaction."""
        return self._apply(principal, [Change(current, new, spid, current.status)])[0]

    # -- planning and storing -------------------------------------------------------------------
    def _plan(self, principal: Principal, entry_id: str, doc: dict[str, Any], where: str) -> Change:
        """Read, check and decide one update; nothing is stored yet."""
        current, spid = self.changeable_entry(principal, entry_id)
        new = read_update(doc, current, spid=spid, where=where)
        changed = changed_fields(current, new)
        refused = changed - self._changeable_fields(principal, current, spid)
        if refused:
            raise AccessRefused(f"{principal.role} may not change {', '.join(sorted(refused))} of this document")
        status = current.status
        # A document administrator deletes by setting (or confirming the patient's) deletion request.
        if principal.role == "DADM" and deletion_code(new) == DELETION_REQUESTED:
            status = "deleted"
        return Change(current, new, spid, status)

    def _changeable_fields(self, principal: Principal, current: DocumentEntry, spid: str) -> frozenset[str]:
        """Who may change what. The patient (and a representative under 303): the confidentiality and
        the deletion status of every document of theirs, and the description of what they provided.
        Professionals: the description of what professionals provided, where they may write at the
        document's level. The document administrator: the description and the deletion status. Nobody
        changes another's confidentiality choice for them."""
        author = current.original_provider_role.code
        if principal.role in PATIENT_SIDE:
            self.access.require(principal, spid=spid, pid=current.patient_pid, action="change-confidentiality")
            return CONFIDENTIALITY | DELETION | (DESCRIPTIVE if author in PATIENT_SIDE else frozenset())
        if principal.role in PROFESSIONALS:
            self.access.require(principal, spid=spid, pid=current.patient_pid, action="write",
                                confidentiality=current.confidentiality_level)
            return DESCRIPTIVE if author in PROFESSIONAL_AUTHORS else frozenset()
        if principal.role == "DADM":
            return DESCRIPTIVE | DELETION
        return frozenset()

    def _apply(self, principal: Principal, changes: list[Change], *, base_url: str | None = None) -> list[DocumentEntry]:
        """Store every change in one transaction with one audit record each (CH-MHD-1 with the
        patient's ATC_DOC_UPDATE or ATC_DOC_DELETE); an update that changes nothing is only audited.
        The record's action is U even for a deletion (the profile fixes it; the trail shows D)."""
        def document(entry: DocumentEntry):
            path = f"DocumentReference/{entry.entry_id}"
            return replace(self.auditor.document(entry), reference=f"{base_url}/{path}" if base_url else path)

        pending = [c for c in changes if c.status != c.current.status or changed_fields(c.current, c.new)]
        unchanged = [c for c in changes if c not in pending]
        if unchanged:
            self.auditor.write_now([self.auditor.record(TRANSACTION, principal, action="U", patient_spid=c.spid,
                                                        documents=(document(c.current),))
                                    for c in unchanged])

        def audit_in_transaction(connection, stored: list[DocumentEntry]) -> None:
            self.auditor.write(connection, [
                self.auditor.record(TRANSACTION, principal, atc_code=change.atc_code, action="U",
                                    patient_spid=change.spid, documents=(document(entry),))
                for change, entry in zip(pending, stored, strict=True)])
            self.changes.metadata_changed(connection, [
                ChangedEntry(principal, change.spid, change.current, entry)
                for change, entry in zip(pending, stored, strict=True)])

        stored = iter(self.versions.update_all(
            [(replace(c.new, version=c.current.version, patient_pid=c.current.patient_pid), c.status) for c in pending],
            within=audit_in_transaction) if pending else [])
        for pid in {c.current.patient_pid for c in pending}:
            self.pages.documents_changed(pid)
        return [replace(next(stored), patient_pid=c.current.patient_pid) if c in pending else c.current
                for c in changes]

    def _resource(self, entry: DocumentEntry, base_url: str) -> dict[str, Any]:
        record = self.patients.get(entry.patient_pid)
        resource = fhir_mapping.document_reference(entry, spid=record.spid, base_url=base_url)
        written = self.versions.written_at(entry)
        if written is not None:
            resource["meta"]["lastUpdated"] = fhir_instant(written)
        return resource


def is_metadata_update_bundle(bundle: dict[str, Any]) -> bool:
    """A CH:MHD-1 Bundle: a transaction whose every entry is a PUT of a DocumentReference."""
    entries = bundle.get("entry") or []
    return bundle.get("type") == "transaction" and bool(entries) and all(
        (e.get("request") or {}).get("method") == "PUT"
        and (e.get("request") or {}).get("url", "").startswith("DocumentReference/")
        and (e.get("resource") or {}).get("resourceType") == "DocumentReference"
        for e in entries)

