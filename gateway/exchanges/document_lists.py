"""The SubmissionSet Lists: ITI-66 Find Document Lists and the read of `List/{id}` (the location every
ITI-65 answer names for its SubmissionSet). Part of the use-case layer.

Access is the documents' own: a List shows only the documents of its set the principal may read, each
decided on its own patient's policies (every patient of a merged record on its own, as ITI-67), never
a deleted one. A set with no document left to show is not there for that principal: its read is the
same 404 as an unknown id (no oracle) and a search does not find it. A set reveals which documents
exist, so it is audited as a search of the patient's documents (ATC_DOC_SEARCH) — a search and a read
alike — with the transaction ITI-66 (Find Document Lists); an emergency access notifies the patient.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from adapters.cara import fhir_mapping
from adapters.cara.dates import fhir_instant
from adapters.cara.errors import InvalidInput, NotFound
from adapters.cara.list_search import ListQuery, matches, parse_list_request
from adapters.cara.store.patients import DatabasePatientIndex
from adapters.cara.store.submission_sets import DatabaseSubmissionSets, SetDocument, StoredSet
from adapters.cara.vocabulary import CONFIDENTIALITY_RANK
from consent.principal import Principal
from gateway.exchanges.access import AccessControl, Members
from gateway.exchanges.auditing import Auditor, audited
from gateway.exchanges.paging_cursors import NOT_ISSUED, PAGING_PARAMS, PageCursors

TRANSACTION = "ITI-66"
PROFILE_FIND_LISTS_RESPONSE = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.FindDocumentListsResponseMessage"


class DocumentLists:
    def __init__(self, *, sets: DatabaseSubmissionSets, patients: DatabasePatientIndex, access: AccessControl,
                 auditor: Auditor, cursors: PageCursors):
        self.sets = sets
        self.patients = patients
        self.access = access
        self.auditor = auditor
        self.cursors = cursors

    @audited(TRANSACTION)
    def find(self, *, principal: Principal, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        """ITI-66: the patient's SubmissionSet Lists matching `params`, newest first, paged by `_cursor`."""
        query = parse_list_request(params)
        position = self._continued(principal, params, query.cursor)
        spid = query.spid
        if query.patient_id is not None:
            # `patient=Patient/{id}`: the same search as by SPID, under the same consent rules (as ITI-67).
            record = self.patients.get(self.patients.surviving_pid(query.patient_id))
            spid = record.spid if record is not None and record.spid else ""
        if not spid:
            self.auditor.write_now([self.auditor.record(TRANSACTION, principal, atc_code="ATC_DOC_SEARCH",
                                                        patient_spid=None, query=tuple(params))])
            return _searchset([], 0, params, base_url, None)
        self.access.require_patient_context(principal, spid)
        pid = self.patients.pid_for_spid(spid)
        members = self.patients.record_of(pid) if pid else ()
        levels = self._visible_levels(principal, members)
        audit = self.auditor.record(TRANSACTION, principal, atc_code="ATC_DOC_SEARCH", patient_spid=spid,
                                    query=tuple(params))
        found = self._matching(query, members, levels)
        through, after = position if position is not None else (None, None)
        if through is None and found:
            through = found[0][0].submitted_at  # the first page's newest set: later pages count the same
        counted = [(stored, shown) for stored, shown in found if through is None or stored.submitted_at <= through]
        following = [(stored, shown) for stored, shown in counted
                     if after is None or (stored.submitted_at, stored.submission_set.submission_set_id) < after]
        page = following[:query.count]
        self.auditor.write_now([audit])
        # As ITI-67: an emergency search is notified whether or not it found anything.
        self._fulfil(principal, members, levels, documents=tuple(d for _, shown in page for d in shown))
        entries = [fhir_mapping.search_match(self._list(stored, shown, spid), base_url=base_url)
                   for stored, shown in page]
        next_url = None
        if len(following) > len(page) and page:
            last = page[-1][0]
            cursor = self.cursors.issue(search=TRANSACTION, principal=principal, params=params, position=[
                through.isoformat(), last.submitted_at.isoformat(), last.submission_set.submission_set_id])
            paged = [(n, v) for n, v in params if n not in PAGING_PARAMS]
            next_url = _url(base_url, [*paged, ("_count", str(query.count)), ("_cursor", cursor)])
        return _searchset(entries, len(counted), params, base_url, next_url)

    @audited(TRANSACTION)
    def read(self, *, principal: Principal, set_id: str) -> dict[str, Any]:
        """`List/{id}`: the SubmissionSet with the documents this principal may see, or NotFound — the
        same for an unknown id as for a set of which nothing may be seen (recorded in the patient's
        trail)."""
        stored = self.sets.get(set_id)
        members = self.patients.record_of(stored.patient_pid) if stored is not None else ()
        surviving_spid = next((s for _, s in members if s), None) if members else None
        if stored is None or surviving_spid is None:
            raise NotFound(f"List/{set_id} is not known")
        levels = self._visible_levels(principal, members)
        shown = _visible(stored, levels)
        if not shown:
            refusal = NotFound(f"List/{set_id} is not known")
            self.auditor.failure(TRANSACTION, principal, refusal, atc_code="ATC_DOC_SEARCH", patient_spid=surviving_spid,
                                 submission_set_unique_id=stored.submission_set.unique_id)
            raise refusal
        self.auditor.write_now([self.auditor.record(TRANSACTION, principal, atc_code="ATC_DOC_SEARCH",
                                                    patient_spid=surviving_spid,
                                                    submission_set_unique_id=stored.submission_set.unique_id)])
        self._fulfil(principal, members, levels, documents=tuple(shown))
        return self._list(stored, shown, surviving_spid)

    # -- helpers ------------------------------------------------------------------------------
    def _matching(self, query: ListQuery, members: Members, levels: dict[str, frozenset[str]]):
        """(set, its documents this principal may see) of every set of the record that shows at least
        one document and matches the query, newest first. Sets are matched in memory on the List they
        answer (their dates, designations and authors are sealed): a record holds at most as many sets as
        documents, and the store keeps opened sets per process."""
        if not any(levels.values()):
            return []
        found = []
        for stored in self.sets.of_patients([pid for pid, _ in members]):
            shown = _visible(stored, levels)
            if shown and matches(query, stored.submission_set, answered_date=_date(stored)):
                found.append((stored, shown))
        return found

    def _visible_levels(self, principal: Principal, members: Members) -> dict[str, frozenset[str]]:
        """Per patient of the record, the levels this principal may read (each on its own policies)."""
        return {p: self.access.visible_levels(principal, spid=s, pid=p, group=members) if s else frozenset()
                for p, s in members}

    def _fulfil(self, principal: Principal, members: Members, levels: dict[str, frozenset[str]], *,
                documents: tuple[SetDocument, ...]) -> None:
        """The obligations (notify the patient of an emergency access) of the record's first patient
        whose documents may be seen, as ITI-67 fulfils them."""
        owner, owner_spid = next(((p, s) for p, s in members if levels.get(p)), (None, None))
        if owner is None:
            return
        decision = self.access.decide(principal, spid=owner_spid, pid=owner, action="read", group=members,
                                      confidentiality=min(levels[owner], key=CONFIDENTIALITY_RANK.__getitem__))
        self.access.fulfil(decision, principal, pid=members[0][0], what="search", documents=documents)

    @staticmethod
    def _list(stored: StoredSet, shown, spid: str) -> dict[str, Any]:
        return fhir_mapping.submission_set_list(stored.submission_set, spid=spid,
                                                submitted_at=fhir_instant(stored.submitted_at),
                                                entry_ids=[d.entry_id for d in shown])

    def _continued(self, principal: Principal, params: list[tuple[str, str]],
                   cursor: str | None) -> tuple[datetime, tuple[datetime, str]] | None:
        """(through, after) of the page a `_cursor` names; None for a first page."""
        if cursor is None:
            return None
        position = self.cursors.read(search=TRANSACTION, principal=principal, params=params, cursor=cursor)
        match position:
            case [str() as through, str() as submitted_at, str() as set_id]:
                try:
                    return datetime.fromisoformat(through), (datetime.fromisoformat(submitted_at), set_id)
                except ValueError:
                    pass
        raise InvalidInput(NOT_ISSUED, location="_cursor")


def _visible(stored: StoredSet, levels: dict[str, frozenset[str]]):
    """The set's documents this principal may see: each at a level its own patient's policies allow."""
    return tuple(d for d in stored.documents if d.confidentiality in levels.get(d.patient_pid, ()))


def _date(stored: StoredSet) -> str:
    return stored.submission_set.submission_time or fhir_instant(stored.submitted_at)


def _url(base_url: str, params: list[tuple[str, str]]) -> str:
    return f"{base_url}/List?{urlencode(params, safe=':|,')}"


def _searchset(entries: list[dict[str, Any]], total: int, params: list[tuple[str, str]], base_url: str,
               next_url: str | None) -> dict[str, Any]:
    links = [{"relation": "self", "url": _url(base_url, params)}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()),
                              "meta": {"profile": [PROFILE_FIND_LISTS_RESPONSE]}, "type": "searchset",
                              "total": total, "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle
