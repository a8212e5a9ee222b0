"""The use-case layer: every exchange with the shared record passes here, whoever calls it (HTTP
routes, the migration CLI, the MLLP bridge). Each use-case takes the acting principal, does the work
through the record's stores and answers in FHIR terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from adapters.cara import fhir_mapping, patient_mapping
from adapters.cara.errors import InvalidInput, NotFound, UnknownPatient
from adapters.cara.mhd_search import parse_find_request
from adapters.cara.model import DocumentEntry, Identifier
from adapters.cara.store.documents import DatabaseDocumentStore, ProvideResult
from adapters.cara.store.patients import DatabasePatientIndex
from consent.principal import Principal


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
    def __init__(self, *, documents: DatabaseDocumentStore, patients: DatabasePatientIndex, community_oid: str):
        self.documents = documents
        self.patients = patients
        self.community_oid = community_oid

    # -- ITI-65 -------------------------------------------------------------------------------
    def provide(self, *, principal: Principal, body: bytes, base_url: str) -> Provided:
        bundle = fhir_mapping.parse_resource(body, "Bundle")
        submission = fhir_mapping.submission_from_bundle(bundle)
        pid = self.patients.pid_for_spid(submission.spid)
        if pid is None:
            raise UnknownPatient(f"EPR-SPID {submission.spid} is not registered in this community",
                                 location="List.subject.identifier")
        result = self.documents.provide(submission, patient_pid=pid)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        locations = fhir_mapping.transaction_locations(bundle, submission, result, base_url=base_url)
        return Provided(fhir_mapping.transaction_response(locations, last_modified=now), result, submission.spid)

    # -- ITI-67 -------------------------------------------------------------------------------
    def find(self, *, principal: Principal, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        request = parse_find_request(params, string_hash=self.documents.string_hash)
        pid = self.patients.pid_for_spid(request.spid)
        if pid is None:  # an unknown patient has no documents; saying more would reveal who is registered
            return fhir_mapping.searchset([], total=0, self_url=_search_url(base_url, params), next_url=None,
                                          base_url=base_url)
        query = request.for_patient(pid)
        total, entries = self.documents.search(query)
        resources = [fhir_mapping.document_reference(e, spid=request.spid, base_url=base_url) for e in entries]
        next_offset = query.offset + query.count
        next_url = None
        if next_offset < total:
            paged = [(n, v) for n, v in params if n not in ("_offset", "_count")]
            next_url = _search_url(base_url, paged + [("_count", str(query.count)), ("_offset", str(next_offset))])
        return fhir_mapping.searchset(resources, total=total, self_url=_search_url(base_url, params),
                                      next_url=next_url, base_url=base_url)

    def read_reference(self, *, principal: Principal, entry_id: str, base_url: str) -> dict[str, Any]:
        entry = self._entry(entry_id, "DocumentReference")
        return fhir_mapping.document_reference(entry, spid=self._spid_of(entry), base_url=base_url)

    # -- ITI-68 -------------------------------------------------------------------------------
    def retrieve(self, *, principal: Principal, entry_id: str) -> Retrieved:
        entry = self._entry(entry_id, "Binary")
        return Retrieved(self.documents.read_content(entry), entry.mime_type, entry)

    # -- ITI-104 ------------------------------------------------------------------------------
    def register_patient(self, *, principal: Principal, identifier_param: str | None,
                         body: bytes) -> tuple[dict[str, Any], bool]:
        source = _source_identifier(identifier_param)
        incoming = patient_mapping.patient_from_resource(fhir_mapping.parse_resource(body, "Patient"))
        record, created = self.patients.register(source, incoming)
        return patient_mapping.patient_resource(record, community_oid=self.community_oid), created

    # -- helpers ------------------------------------------------------------------------------
    def _entry(self, entry_id: str, kind: str) -> DocumentEntry:
        entry = self.documents.get_entry(entry_id)
        if entry is None:
            raise NotFound(f"{kind}/{entry_id} is not known")
        return entry

    def _spid_of(self, entry: DocumentEntry) -> str:
        record = self.patients.get(entry.patient_pid)
        if record is None or record.spid is None:
            raise NotFound(f"the patient of DocumentReference/{entry.entry_id} has no EPR-SPID")
        return record.spid


def _source_identifier(value: str | None) -> Identifier:
    system, _, local = (value or "").partition("|")
    if not system or not local:
        raise InvalidInput("ITI-104 needs ?identifier=<system>|<value> naming the source identifier",
                           location="identifier")
    return Identifier(system, local)


def _search_url(base_url: str, params: list[tuple[str, str]]) -> str:
    return f"{base_url}/DocumentReference?{urlencode(params, safe=':|,')}"
