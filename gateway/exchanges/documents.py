"""The document exchange: documents in (ITI-65, and the provide seam the HL7 v2 bridge and the
migration call: `batch_provide`), found (ITI-67), read and retrieved (ITI-68), whoever calls it (HTTP
routes, the migration CLI, the MLLP bridge, the patient's page). Each use-case takes the acting
principal, asks the policy decision point (`gateway.exchanges.access`), does the work through the
record's stores and answers in FHIR terms. Identities are `identity.py`, PPQm `policies.py`,
metadata changes `metadata.py`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson

from adapters.cara import fhir_mapping
from adapters.cara.client_json import DEFAULT_LIMITS, JsonLimits
from adapters.cara.errors import Gone, InvalidInput, NotFound
from adapters.cara.mhd_search import DocumentQuery, parse_find_request
from adapters.cara.model import DocumentEntry, Submission
from adapters.cara.dates import fhir_instant
from adapters.cara.store.document_batches import ProvideResult
from adapters.cara.store.documents import DatabaseDocumentStore
from adapters.cara.store.patients import DatabasePatientIndex
from adapters.cara.vocabulary import CONFIDENTIALITY_RANK
from consent.principal import Principal
from gateway.exchanges.access import AccessControl
from gateway.exchanges.auditing import Auditor, audited
from gateway.auth.errors import AccessRefused
from gateway.exchanges.batch_provide import AuthorisedBatch, BatchOutcome, DocumentProvider, Within
from gateway.exchanges.record_changes import RecordChanges
from gateway.exchanges.upload_rules import UploadRules
from gateway.exchanges.paging_cursors import NOT_ISSUED, PAGING_PARAMS, PageCursors
from gateway.exchanges.search_pages import NoSearchPages, SearchPages

RENDERED_CACHED = 5_000
PARSED_FINDS_CACHED = 5_000
# What the patient's trail calls each read (CH:ATC): a DocumentReference read (ITI-67) reads metadata,
# which CH:ATC counts as a document search (ATC_DOC_SEARCH, naming the document); only ITI-68 hands
# the document itself over (ATC_DOC_READ, "Document retrieval").
ATC_OF_READ = {"ITI-67": "ATC_DOC_SEARCH", "ITI-68": "ATC_DOC_READ"}


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


class DocumentExchange:
    def __init__(self, *, documents: DatabaseDocumentStore, patients: DatabasePatientIndex, access: AccessControl,
                 auditor: Auditor, community_oid: str, cursors: PageCursors, pages: SearchPages | None = None,
                 json_limits: JsonLimits = DEFAULT_LIMITS, changes: RecordChanges | None = None):
        self.json_limits = json_limits
        self.cursors = cursors
        self.documents = documents
        self.pages = pages or NoSearchPages()
        self.patients = patients
        self.access = access
        self.auditor = auditor
        self.community_oid = community_oid
        self.rules = UploadRules(documents=documents, patients=patients, access=access)
        # The one provide seam; `changes`: who else must know, in its transaction, what was stored.
        self.provider = DocumentProvider(rules=self.rules, documents=documents, patients=patients, access=access,
                                         auditor=auditor, pages=self.pages, changes=changes or RecordChanges())
        self._rendered_cache: dict[tuple, bytes] = {}
        self._parsed_finds: dict[tuple, Any] = {}

    @property
    def changes(self) -> RecordChanges:
        return self.provider.changes

    # -- ITI-65 and every other way documents come in (see batch_provide: one seam) -------------
    @audited("ITI-65")
    def provide(self, *, principal: Principal, body: bytes, base_url: str) -> Provided:
        bundle = fhir_mapping.parse_resource(body, "Bundle", limits=self.json_limits)
        return self.provide_bundle(principal=principal, bundle=bundle, base_url=base_url)

    @audited("ITI-65")
    def provide_bundle(self, *, principal: Principal, bundle: dict[str, Any], base_url: str) -> Provided:
        """ITI-65: the Bundle's submission as a batch of one. Its consent comes from the process's
        policy cache, which in the gateway follows every change (see `DocumentProvider.authorise_many`)."""
        submission = fhir_mapping.submission_from_bundle(bundle)
        submission, result = self._provide_one(principal, submission, fresh_policies=False)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        locations = fhir_mapping.transaction_locations(bundle, submission, result, base_url=base_url)
        return Provided(fhir_mapping.transaction_response(locations, last_modified=now), result, submission.spid)

    @audited("ITI-65")
    def provide_submission(self, *, principal: Principal, submission: Submission) -> tuple[Submission, ProvideResult]:
        """One submission already in the record's model (an HL7 v2 MDM, an XDM package) as a batch of
        one: identity, consent (provide level), storage and the ATC_DOC_CREATE record in one
        transaction. Returns the submission as stored (levels raised) and the store's result; a
        refusal is raised (already audited)."""
        return self._provide_one(principal, submission, fresh_policies=True)

    def _provide_one(self, principal: Principal, submission: Submission, *,
                     fresh_policies: bool) -> tuple[Submission, ProvideResult]:
        [outcome] = self.provider.provide_many(principal=principal, submissions=[submission],
                                               fresh_policies=fresh_policies)
        if outcome.error is not None:
            raise outcome.error
        return outcome.stored, outcome.result

    @audited("ITI-65")
    def provide_many(self, *, principal: Principal, submissions: Sequence[Submission],
                     within: Within | None = None) -> list[BatchOutcome]:
        """Many submissions in ONE database transaction with their audit records (one ATC_DOC_CREATE
        record per document) and one commit; each submission is all-or-nothing; a refused one is
        audited and does not affect the others; search pages invalidated for the patients changed.
        `within(connection, outcomes)` runs in that transaction before the commit (see batch_provide)."""
        return self.provider.provide_many(principal=principal, submissions=submissions, within=within)

    @audited("ITI-65")
    def authorise_many(self, *, principal: Principal, submissions: Sequence[Submission],
                       in_flight: frozenset[tuple[str, str]] = frozenset()) -> AuthorisedBatch:
        """`provide_many`'s first half, for a caller that pipelines batches: every decision (patient
        context, provide level, write, named documents) and the bodies sealed, no transaction. The
        result goes to `store_authorised`; `in_flight` = the `names` of the batch still being stored."""
        return self.provider.authorise_many(principal=principal, submissions=submissions, in_flight=in_flight)

    @audited("ITI-65")
    def store_authorised(self, *, principal: Principal, batch: AuthorisedBatch,
                         within: Within | None = None) -> list[BatchOutcome]:
        """`provide_many`'s second half: the authorised batch in one transaction with its audit records."""
        if batch.principal != principal:
            raise AccessRefused("a batch is stored by the principal it was authorised for")
        return self.provider.store_authorised(batch, within=within)

    # -- ITI-67 -------------------------------------------------------------------------------
    @audited("ITI-67")
    def find(self, *, principal: Principal, params: list[tuple[str, str]], base_url: str) -> bytes:
        """The searchset Bundle, as JSON (assembled from entries serialised once, see `_entry_json`)."""
        request = self._parsed_find_request(params)
        if request.cursor is not None:
            request = replace(request, query=self._continued(principal, params, request.cursor, request.query))
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
        members = self.patients.record_of(pid) if pid else ()
        # Each patient of a merged record is decided on its own (see `AccessControl.owner_policies`).
        by_patient = {p: self.access.visible_levels(principal, spid=s, pid=p, group=members) if s else frozenset()
                      for p, s in members}
        levels = frozenset().union(*by_patient.values())
        audit = self.auditor.record("ITI-67", principal, atc_code="ATC_DOC_SEARCH", patient_spid=request.spid,
                                    query=tuple(params))
        if not levels:
            # An unknown patient and a record this principal may not see both look like an empty one.
            self.auditor.write_now([audit])
            return fhir_mapping.searchset_json([], total=0, self_url=_search_url(base_url, params), next_url=None)
        # Filtering happens in the query, before paging: total and next links count visible entries only.
        query = replace(request.for_patient(pid), confidentiality=tuple(sorted(levels)))
        if len(members) > 1:
            query = replace(query, levels_by_patient=tuple((p, tuple(sorted(v))) for p, v in by_patient.items()))
        page = self.pages.get(query, lambda: self.documents.search(query))
        total, entries, next_after, through = page.total, page.entries, page.next_after, page.through
        # The obligations (notify the patient of an emergency access) of the record's first visible patient.
        owner, owner_spid = next((p, s) for p, s in members if by_patient[p])
        decision = self.access.decide(principal, spid=owner_spid, pid=owner, action="read", group=members,
                                      confidentiality=min(by_patient[owner], key=CONFIDENTIALITY_RANK.__getitem__))
        self.auditor.write_now([audit])
        self.access.fulfil(decision, principal, pid=pid, what="search", documents=entries)
        matches = [self._entry_json(e, updated, request.spid, base_url)
                   for e, updated in zip(entries, page.last_updated or (None,) * len(entries))]
        next_url = None
        if next_after is not None:  # more entries follow (_count=0 asks the total only: no next page)
            cursor = self.cursors.issue(search="ITI-67", principal=principal, params=params,
                                        position=[through, next_after[0], next_after[1]])
            paged = [(n, v) for n, v in params if n not in PAGING_PARAMS]
            # The cursor is URL-safe by construction (base64url and a dot): appended, not quoted again.
            next_url = f"{_search_url(base_url, [*paged, ('_count', str(query.count))])}&_cursor={cursor}"
        return fhir_mapping.searchset_json(matches, total=total, self_url=_search_url(base_url, params),
                                           next_url=next_url)

    def _parsed_find_request(self, params: list[tuple[str, str]]):
        """`parse_find_request`, remembered per parameter list: a pure function of the parameters (and
        of this store's index key), asked again with the same few searches all day. Refusals are not
        remembered (they raise)."""
        key = tuple(params)
        request = self._parsed_finds.get(key)
        if request is None:
            request = parse_find_request(params, string_hash=self.documents.string_hash)
            if len(self._parsed_finds) >= PARSED_FINDS_CACHED:
                self._parsed_finds.clear()
            self._parsed_finds[key] = request
        return request

    def _continued(self, principal: Principal, params: list[tuple[str, str]], cursor: str,
                   query: DocumentQuery) -> DocumentQuery:
        """The query of the page a `_cursor` names: after its position, counted in its first page's snapshot."""
        position = self.cursors.read(search="ITI-67", principal=principal, params=params, cursor=cursor)
        match position:
            case [int() | None as through, int() as seq, str() as entry_id]:
                return replace(query, after=(seq, entry_id), through=through)
        raise InvalidInput(NOT_ISSUED, location="_cursor")

    @audited("ITI-67")
    def read_reference(self, *, principal: Principal, entry_id: str, base_url: str,
                       version: int | None = None) -> dict[str, Any]:
        """GET DocumentReference/<id>, or a version of it (`_history/<version>`): CH:MHD-1 keeps every
        version. An older version is decided under its own confidentiality as well as the current one
        (relabelling a document restricted must not leave its old version readable)."""
        entry, spid, decision = self._readable_entry(principal, entry_id, "DocumentReference", "ITI-67",
                                                     gone_if_permitted=True)
        versions = self.documents.versions
        if version is not None and version != entry.version:
            kept = {v.version: v for v in versions.history(entry.entry_id)}.get(version)
            if kept is None:
                raise NotFound(f"DocumentReference/{entry_id} has no version {version}",
                               location="DocumentReference.meta.versionId")
            kept = replace(kept, patient_pid=entry.patient_pid)
            if not self.rules.read_decision(principal, kept)[0].permit:
                refusal = NotFound(f"DocumentReference/{entry_id} has no version {version}")
                self.auditor.failure("ITI-67", principal, refusal, atc_code=ATC_OF_READ["ITI-67"], action="R",
                                     patient_spid=spid, documents=(self.auditor.document(entry),))
                raise refusal
            entry = kept
        resource = fhir_mapping.document_reference(entry, spid=spid, base_url=base_url)
        written = versions.written_at(entry)
        if written is not None:
            resource["meta"]["lastUpdated"] = fhir_instant(written)
        self._record_read("ITI-67", principal, entry, spid, decision, what="read metadata")
        return resource

    # -- ITI-68 -------------------------------------------------------------------------------
    @audited("ITI-68")
    def retrieve(self, *, principal: Principal, entry_id: str, base_url: str) -> Retrieved:
        """The document's bytes. Its record names the Binary by its URL (`base_url`: the FHIR base), as
        the CH profile of the ITI-68 responder's record requires; the patient's trail shows its uniqueId."""
        entry, spid, decision = self._readable_entry(principal, entry_id, "Binary", "ITI-68")
        content = self.documents.read_content(entry)
        self._record_read("ITI-68", principal, entry, spid, decision, what="retrieve",
                          reference=f"{base_url}/Binary/{entry.entry_id}")
        return Retrieved(content, entry.mime_type, entry)

    # -- helpers ------------------------------------------------------------------------------
    def _entry_json(self, entry: DocumentEntry, last_updated: str | None, spid: str, base_url: str) -> bytes:
        """The searchset entry of an entry, serialised once per version and status (entries are
        immutable but for their status), spid and base URL: searches return the same entries again and
        again. `last_updated` is its version's meta.lastUpdated as the store formatted it (one per
        version, so it needs no place in the key)."""
        key = (entry.entry_id, entry.version, entry.status, spid, base_url)
        serialised = self._rendered_cache.get(key)
        if serialised is None:
            if len(self._rendered_cache) >= RENDERED_CACHED:
                self._rendered_cache.clear()
            resource = fhir_mapping.document_reference(entry, spid=spid, base_url=base_url)
            if last_updated is not None:
                resource["meta"]["lastUpdated"] = last_updated
            serialised = orjson.dumps(fhir_mapping.search_match(resource, base_url=base_url))
            self._rendered_cache[key] = serialised
        return serialised

    def _readable_entry(self, principal: Principal, entry_id: str, kind: str, transaction: str, *,
                        gone_if_permitted: bool = False):
        """(entry, its patient's SPID, the permit), or NotFound — the same answer for a document that
        does not exist and one this principal may not see, so a refusal reveals nothing. A refusal is
        recorded in the patient's trail.

        A deleted entry (CH:MHD-1, DADM) is answered like a missing one, unless `gone_if_permitted`
        (the DocumentReference read): then it is decided like the live document it was, and only a
        permit learns it is Gone (410); a refusal is the same 404 as an unknown id. Both are audited
        in the patient's trail, as any read of it."""
        entry = self.documents.get_entry(entry_id)
        if entry is None or (entry.status == "deleted" and not gone_if_permitted):
            raise NotFound(f"{kind}/{entry_id} is not known")
        decision, spid, members = self.rules.read_decision(principal, entry)
        if entry.status == "deleted" and principal.role == "DADM" and spid is not None:
            # The document administrator reaches a document through its metadata (CH:MHD-1), not a
            # read: it is told Gone where it could have deleted it, as the patient and the readers are.
            decision = self.access.decide(principal, spid=spid, pid=entry.patient_pid, action="administer-metadata")
        if spid is None:
            raise NotFound(f"{kind}/{entry_id} is not known")
        # Decided under its own patient's policies; read as the merged record's (its surviving patient's
        # SPID in the answer and the trail, its notifications), as before the merge rule.
        surviving_pid, surviving_spid = members[0]
        if not decision.permit:
            refusal = NotFound(f"{kind}/{entry_id} is not known")
            self.auditor.failure(transaction, principal, refusal, atc_code=ATC_OF_READ[transaction], action="R",
                                 patient_spid=surviving_spid or spid, documents=(self.auditor.document(entry),))
            raise refusal
        if entry.status == "deleted":
            gone = Gone(f"{kind}/{entry_id} was deleted (version {entry.version})")
            self.auditor.failure(transaction, principal, gone, atc_code=ATC_OF_READ[transaction], action="R",
                                 patient_spid=surviving_spid or spid, documents=(self.auditor.document(entry),))
            raise gone
        return replace(entry, patient_pid=surviving_pid), surviving_spid or spid, decision

    def _record_read(self, transaction: str, principal: Principal, entry: DocumentEntry, spid: str, decision, *,
                     what: str, reference: str | None = None) -> None:
        """Audit, then fulfil the decision's obligations: both before the answer leaves."""
        document = replace(self.auditor.document(entry), reference=reference)
        self.auditor.write_now([self.auditor.record(transaction, principal, atc_code=ATC_OF_READ[transaction],
                                                    action="R", patient_spid=spid, documents=(document,))])
        self.access.fulfil(decision, principal, pid=entry.patient_pid, what=what, documents=(entry,))


def _search_url(base_url: str, params: list[tuple[str, str]]) -> str:
    return _encoded_search_url(base_url, tuple(params))


@functools.lru_cache(maxsize=4096)
def _encoded_search_url(base_url: str, params: tuple[tuple[str, str], ...]) -> str:
    # Remembered, as a search's self link is built for every answer and the same searches recur.
    return f"{base_url}/DocumentReference?" + "&".join(f"{quote(n, safe='.:_-')}={quote(v, safe=':|,.-_')}"
                                                     for n, v in params)


def is_consent_bundle(bundle: dict[str, Any]) -> bool:
    """A PPQ-4 Bundle, told apart from ITI-65 by content: some entry is a Consent or targets one
    (`Consent`, `Consent/<id>`, `Consent?identifier=…`, as the IG's DELETE Bundle does) and none is what a
    Provide Document Bundle holds. Anything else is answered as ITI-65, with MHD's errors."""
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
    def targets_consent(entry: dict[str, Any]) -> bool:
        url = str((entry.get("request") or {}).get("url") or "")
        return (entry.get("resource") or {}).get("resourceType") == "Consent" or url.split("?")[0].split("/")[0] == "Consent"
    provide_types = {"List", "DocumentReference", "Binary"}
    return any(targets_consent(e) for e in entries) and not any(
        (e.get("resource") or {}).get("resourceType") in provide_types for e in entries)
