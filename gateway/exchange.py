"""The use-case layer: every exchange with the shared record passes here, whoever calls it (HTTP
routes, the migration CLI, the MLLP bridge). Each use-case takes the acting principal, asks the
policy decision point (`gateway.access`), does the work through the record's stores and answers in
FHIR terms. PPQm use-cases are in `policy_exchange.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from adapters.cara import fhir_mapping, patient_mapping
from adapters.cara.client_json import DEFAULT_LIMITS, JsonLimits
from adapters.cara.errors import InvalidInput, NotFound, UnknownPatient
from adapters.cara.mhd_search import parse_find_request
from adapters.cara.model import DocumentEntry, Identifier, PatientRecord, Submission
from adapters.cara.store.documents import DatabaseDocumentStore, ProvideResult
from adapters.cara.store.patients import DatabasePatientIndex
from adapters.cara.vocabulary import CONFIDENTIALITY_RANK
from consent.principal import Principal
from gateway.access import AccessControl
from gateway.auditing import Auditor, audited
from gateway.auth.errors import AccessRefused
from gateway.batch_provide import BatchOutcome, provide_many as _provide_many
from gateway.search_pages import NoSearchPages, SearchPages

RENDERED_CACHED = 5_000
# Who may feed identities (ITI-104): systems and professionals, not patients or representatives.
IDENTITY_FEEDERS = frozenset({"HCP", "ASS", "TCU", "PADM", "DADM"})


@dataclass(frozen=True)
class Retrieved:
    content: bytes
    content_type: str
    entry: DocumentEntry


@dataclass(frozen=True)
class Provided:
    response: dict[str, Any]
    result: ProvideResult
    spid: str


class Exchange:
    def __init__(self, *, documents: DatabaseDocumentStore, patients: DatabasePatientIndex, access: AccessControl,
                 auditor: Auditor, community_oid: str, pages: SearchPages | None = None,
                 json_limits: JsonLimits = DEFAULT_LIMITS):
        self.json_limits = json_limits
        self.documents = documents
        self.pages = pages or NoSearchPages()
        self.patients = patients
        self.access = access
        self.auditor = auditor
        self.community_oid = community_oid
        self._rendered_cache: dict[tuple, bytes] = {}

    # -- ITI-65 -------------------------------------------------------------------------------
    @audited("ITI-65")
    def provide(self, *, principal: Principal, body: bytes, base_url: str) -> Provided:
        bundle = fhir_mapping.parse_resource(body, "Bundle", limits=self.json_limits)
        return self.provide_bundle(principal=principal, bundle=bundle, base_url=base_url)

    @audited("ITI-65")
    def provide_bundle(self, *, principal: Principal, bundle: dict[str, Any], base_url: str) -> Provided:
        submission = fhir_mapping.submission_from_bundle(bundle)
        submission, result = self.provide_submission(principal=principal, submission=submission)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        locations = fhir_mapping.transaction_locations(bundle, submission, result, base_url=base_url)
        return Provided(fhir_mapping.transaction_response(locations, last_modified=now), result, submission.spid)

    @audited("ITI-65")
    def provide_submission(self, *, principal: Principal, submission: Submission) -> tuple[Submission, ProvideResult]:
        """Provide a submission already in the record's model (ITI-65 after mapping, an HL7 v2 MDM, an
        XDM package): identity, consent (provide level), storage and the ATC_DOC_CREATE record in one
        transaction. Returns the submission as stored (levels raised) and the store's result."""
        self.access.require_patient_context(principal, submission.spid)
        pid = self.patients.pid_for_spid(submission.spid)
        if pid is None:
            raise UnknownPatient(f"EPR-SPID {submission.spid} is not registered in this community",
                                 location="List.subject.identifier")
        submission = self._authorise_upload(principal, submission, pid)

        def audit_in_transaction(connection, result: ProvideResult) -> None:
            created = [d.entry for d, p in zip(submission.documents, result.documents, strict=True) if p.created]
            record = self.auditor.record("ITI-65", principal, atc_code="ATC_DOC_CREATE" if created else None,
                                         patient_spid=submission.spid,
                                         documents=tuple(self.auditor.document(e) for e in created),
                                         submission_set_unique_id=submission.submission_set.unique_id)
            self.auditor.write(connection, [record])

        result = self.documents.provide(submission, patient_pid=pid, within=audit_in_transaction)
        if any(provided.created for provided in result.documents):
            self.pages.documents_changed(pid)
        return submission, result

    @audited("ITI-65")
    def provide_many(self, *, principal: Principal, submissions: Sequence[Submission],
                     within: Callable | None = None) -> list[BatchOutcome]:
        """Many submissions in ONE database transaction with their audit records (one ATC_DOC_CREATE
        record per document) and one commit; each submission is all-or-nothing; a refused one is
        audited and does not affect the others; search pages invalidated for the patients changed.
        `within(connection, outcomes)` runs in that transaction before the commit (see batch_provide)."""
        return _provide_many(self, principal=principal, submissions=submissions, within=within)

    def _authorise_upload(self, principal: Principal, submission: Submission, pid: str) -> Submission:
        """Each document raised to the patient's provide level (never lowered), then the write decided
        at the level it will be stored with. Any refusal refuses the whole submission."""
        documents = []
        for document in submission.documents:
            level = self.access.upload_level(document.entry.confidentiality_level, pid=pid)
            self.access.require(principal, spid=submission.spid, pid=pid, action="write", confidentiality=level)
            if level != document.entry.confidentiality_level:
                document = replace(document, entry=document.entry.with_confidentiality_level(level))
            documents.append(document)
        return replace(submission, documents=tuple(documents))

    # -- ITI-67 -------------------------------------------------------------------------------
    @audited("ITI-67")
    def find(self, *, principal: Principal, params: list[tuple[str, str]], base_url: str) -> bytes:
        """The searchset Bundle, as JSON (assembled from entries serialised once, see `_entry_json`)."""
        request = parse_find_request(params, string_hash=self.documents.string_hash)
        if request.patient_id is not None:
            # `patient=Patient/{id}`: the same search as by SPID, under the same consent rules.
            record = self.patients.get(self.patients.surviving_pid(request.patient_id))
            if record is None or not record.spid:
                self.auditor.write_now([self.auditor.record("ITI-67", principal, atc_code="ATC_DOC_SEARCH",
                                                            patient_spid=None, query=tuple(params))])
                return fhir_mapping.searchset_json([], total=0, self_url=_search_url(base_url, params),
                                                   next_url=None)
            request = replace(request, spid=record.spid)
        self.access.require_patient_context(principal, request.spid)
        pid = self.patients.pid_for_spid(request.spid)
        levels = self.access.visible_levels(principal, spid=request.spid, pid=pid) if pid else frozenset()
        audit = self.auditor.record("ITI-67", principal, atc_code="ATC_DOC_SEARCH", patient_spid=request.spid,
                                    query=tuple(params))
        if not levels:
            # An unknown patient and a record this principal may not see both look like an empty one.
            self.auditor.write_now([audit])
            return fhir_mapping.searchset_json([], total=0, self_url=_search_url(base_url, params), next_url=None)
        # Filtering happens in the query, before paging: total and next links count visible entries only.
        query = replace(request.for_patient(pid), confidentiality=tuple(sorted(levels)))
        total, entries = self.pages.get(query, lambda: self.documents.search(query))
        decision = self.access.decide(principal, spid=request.spid, pid=pid, action="read",
                                      confidentiality=min(levels, key=CONFIDENTIALITY_RANK.__getitem__))
        self.auditor.write_now([audit])
        self.access.fulfil(decision, principal, pid=pid, what="search",
                           documents=tuple(e.unique_id for e in entries))
        matches = [self._entry_json(e, request.spid, base_url) for e in entries]
        next_offset = query.offset + query.count
        next_url = None
        if next_offset < total and query.count:  # _count=0 asks the total only: no next page
            paged = [(n, v) for n, v in params if n not in ("_offset", "_count")]
            next_url = _search_url(base_url, paged + [("_count", str(query.count)), ("_offset", str(next_offset))])
        return fhir_mapping.searchset_json(matches, total=total, self_url=_search_url(base_url, params),
                                           next_url=next_url)

    @audited("ITI-67")
    def read_reference(self, *, principal: Principal, entry_id: str, base_url: str) -> dict[str, Any]:
        entry, spid, decision = self._readable_entry(principal, entry_id, "DocumentReference", "ITI-67")
        resource = fhir_mapping.document_reference(entry, spid=spid, base_url=base_url)
        self._record_read("ITI-67", principal, entry, spid, decision, what="read metadata")
        return resource

    # -- ITI-68 -------------------------------------------------------------------------------
    @audited("ITI-68")
    def retrieve(self, *, principal: Principal, entry_id: str) -> Retrieved:
        entry, spid, decision = self._readable_entry(principal, entry_id, "Binary", "ITI-68")
        content = self.documents.read_content(entry)
        self._record_read("ITI-68", principal, entry, spid, decision, what="retrieve")
        return Retrieved(content, entry.mime_type, entry)

    # -- ITI-104 ------------------------------------------------------------------------------
    @audited("ITI-104")
    def register_patient(self, *, principal: Principal, identifier_param: str | None,
                         body: bytes) -> tuple[dict[str, Any], bool]:
        if principal.role not in IDENTITY_FEEDERS:
            raise AccessRefused(f"role {principal.role} may not feed patient identities")
        source = _source_identifier(identifier_param)
        resource = fhir_mapping.parse_resource(body, "Patient", limits=self.json_limits)
        incoming = patient_mapping.patient_from_resource(resource)
        record, created = self.patients.register(source, incoming)
        # The ledger is in the clear: the record names the patient by SPID only, no local id, no demographics.
        self.auditor.write_now([self.auditor.record("ITI-104", principal, action="C" if created else "U",
                                                    patient_spid=record.spid)])
        return patient_mapping.patient_resource(record, community_oid=self.community_oid), created

    @audited("ITI-104")
    def register_patient_record(self, *, principal: Principal, source: Identifier,
                                incoming: PatientRecord) -> tuple[PatientRecord, bool]:
        """ITI-104 at the model level (an HL7 v2 ADT^A08 after mapping): the same feeder rule, identity
        vigilance (a conflict raises IdentityConflict with its review case) and audit record."""
        if principal.role not in IDENTITY_FEEDERS:
            raise AccessRefused(f"role {principal.role} may not feed patient identities")
        record, created = self.patients.register(source, incoming)
        self.auditor.write_now([self.auditor.record("ITI-104", principal, action="C" if created else "U",
                                                    patient_spid=record.spid)])
        return record, created

    # -- helpers ------------------------------------------------------------------------------
    def _entry_json(self, entry: DocumentEntry, spid: str, base_url: str) -> bytes:
        """The searchset entry of an entry, serialised once per status (entries are immutable but for
        their status), spid and base URL: searches return the same entries again and again."""
        key = (entry.entry_id, entry.version, entry.status, spid, base_url)
        serialised = self._rendered_cache.get(key)
        if serialised is None:
            if len(self._rendered_cache) >= RENDERED_CACHED:
                self._rendered_cache.clear()
            resource = fhir_mapping.document_reference(entry, spid=spid, base_url=base_url)
            serialised = orjson.dumps(fhir_mapping.search_match(resource, base_url=base_url))
            self._rendered_cache[key] = serialised
        return serialised

    def _readable_entry(self, principal: Principal, entry_id: str, kind: str, transaction: str):
        """(entry, its patient's SPID, the permit), or NotFound — the same answer for a document that
        does not exist and one this principal may not see, so a refusal reveals nothing. A refusal is
        recorded in the patient's trail."""
        entry = self.documents.get_entry(entry_id)
        if entry is not None:
            # A merged patient's documents are the surviving patient's: its SPID, policies and notifications.
            entry = replace(entry, patient_pid=self.patients.surviving_pid(entry.patient_pid))
        record = self.patients.get(entry.patient_pid) if entry else None
        # A deleted entry (CH:MHD-1, DADM) is answered like a missing one; its audit records stay.
        if entry is None or record is None or record.spid is None or entry.status == "deleted":
            raise NotFound(f"{kind}/{entry_id} is not known")
        decision = self.access.decide(principal, spid=record.spid, pid=entry.patient_pid, action="read",
                                      confidentiality=entry.confidentiality_level)
        if not decision.permit:
            refusal = NotFound(f"{kind}/{entry_id} is not known")
            self.auditor.failure(transaction, principal, refusal, atc_code="ATC_DOC_READ", patient_spid=record.spid,
                                 documents=(self.auditor.document(entry),))
            raise refusal
        return entry, record.spid, decision

    def _record_read(self, transaction: str, principal: Principal, entry: DocumentEntry, spid: str, decision, *,
                     what: str) -> None:
        """Audit, then fulfil the decision's obligations: both before the answer leaves."""
        self.auditor.write_now([self.auditor.record(transaction, principal, atc_code="ATC_DOC_READ",
                                                    patient_spid=spid, documents=(self.auditor.document(entry),))])
        self.access.fulfil(decision, principal, pid=entry.patient_pid, what=what, documents=(entry.unique_id,))


def _source_identifier(value: str | None) -> Identifier:
    system, _, local = (value or "").partition("|")
    if not system or not local:
        raise InvalidInput("ITI-104 needs ?identifier=<system>|<value> naming the source identifier",
                           location="identifier")
    return Identifier(system, local)


def _search_url(base_url: str, params: list[tuple[str, str]]) -> str:
    return f"{base_url}/DocumentReference?" + "&".join(f"{quote(n, safe='.:_-')}={quote(v, safe=':|,.-_')}"
                                                     for n, v in params)


def is_consent_bundle(bundle: dict[str, Any]) -> bool:
    """A PPQ-4 Bundle: every entry a Consent, or a DELETE of one."""
    entries = bundle.get("entry") or []
    return bool(entries) and all(
        (e.get("resource") or {}).get("resourceType") == "Consent"
        or ((e.get("request") or {}).get("method") == "DELETE" and (e.get("request") or {}).get("url", "").startswith("Consent/"))
        for e in entries)
