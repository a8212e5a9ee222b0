"""Patient identity use-cases: the ITI-104 feed (FHIR, and HL7 v2 ADT at the model level), PIXm
(ITI-83), PDQm (ITI-78 search and read, ITI-119 $match), merge and unmerge, and the identity review list.

Looking identities up is for professionals and systems, never for patients or representatives (403);
a token bound to one patient (extended token) sees that patient only. Every query is audited (ITI-83,
ITI-78); the ledger is in the clear, so it names patients by SPID and records the query's parameter
names and identifier systems, never a name, a birth date or a local id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from adapters.cara import fhir_mapping, identity, patient_mapping, patient_matching
from adapters.cara.store.patient_match import shared_demographics
from adapters.cara.client_json import DEFAULT_LIMITS, JsonLimits
from adapters.cara.errors import InvalidInput, NotFound
from adapters.cara.model import Identifier, PatientRecord
from adapters.cara.store.identity_reviews import IdentityReview
from adapters.cara.store.patients import DatabasePatientIndex
from adapters.cara.vocabulary import SPID_SYSTEM
from consent.principal import Principal
from consent.roles import IDENTITY_FEEDERS, IDENTITY_READERS, MERGERS, REVIEWERS
from gateway.exchanges.auditing import Auditor, audited
from gateway.auth.errors import AccessRefused
from gateway.exchanges.search_pages import NoSearchPages, SearchPages

PIX_PARAMS = ("sourceIdentifier", "targetSystem")


class IdentityExchange:
    def __init__(self, *, patients: DatabasePatientIndex, auditor: Auditor, community_oid: str,
                 pages: SearchPages | None = None, json_limits: JsonLimits = DEFAULT_LIMITS):
        self.json_limits = json_limits
        self.patients = patients
        self.auditor = auditor
        self.pages = pages or NoSearchPages()
        self.mpi_system = f"urn:oid:{community_oid}"
        self.community_oid = community_oid
        # Called with the MPI-PID after a feed committed (ITI-104, A08): what waits on a patient's
        # identity (the bridge's held messages) is processed again. Each must not raise.
        self.patient_fed: list[Callable[[str], None]] = []
        # Called with the MPI-PID after an identity review naming it was resolved (as `patient_fed`).
        self.review_resolved: list[Callable[[str], None]] = []

    # -- ITI-104 ------------------------------------------------------------------------------
    @audited("ITI-104")
    def register_patient(self, *, principal: Principal, identifier_param: str | None,
                         body: bytes) -> tuple[dict[str, Any], bool]:
        _require_role(principal, IDENTITY_FEEDERS, "feed patient identities")
        source = _source_identifier(identifier_param)
        resource = fhir_mapping.parse_resource(body, "Patient", limits=self.json_limits)
        incoming = patient_mapping.patient_from_resource(resource)
        record, created = self.patients.register(source, incoming)
        # The ledger is in the clear: the record names the patient by SPID only, no local id, no demographics.
        self.auditor.write_now([self.auditor.record("ITI-104", principal, action="C" if created else "U",
                                                    patient_spid=record.spid)])
        self._fed(record.pid)
        return patient_mapping.with_version(patient_mapping.patient_resource(record, community_oid=self.community_oid),
                                            self.patients.version_of(record.pid)), created

    @audited("ITI-104")
    def register_patient_record(self, *, principal: Principal, source: Identifier,
                                incoming: PatientRecord) -> tuple[PatientRecord, bool]:
        """ITI-104 at the model level (an HL7 v2 ADT^A08 after mapping): the same feeder rule, identity
        vigilance (a conflict raises IdentityConflict with its review case) and audit record."""
        _require_role(principal, IDENTITY_FEEDERS, "feed patient identities")
        # An ADT message carries no birth name nor managing organisation: the MPI keeps the ones it has.
        record, created = self.patients.register(source, incoming, complete=False)
        self.auditor.write_now([self.auditor.record("ITI-104", principal, action="C" if created else "U",
                                                    patient_spid=record.spid)])
        self._fed(record.pid)
        return record, created

    def _fed(self, pid: str) -> None:
        for follower in self.patient_fed:
            follower(pid)

    # -- ITI-83 -------------------------------------------------------------------------------
    @audited("ITI-83")
    def pix(self, *, principal: Principal, params: list[tuple[str, str]]) -> dict[str, Any]:
        _require_role(principal, IDENTITY_READERS, "look up patient identities")
        unknown = sorted({n for n, _ in params if n not in PIX_PARAMS})
        if unknown:
            raise InvalidInput(f"unknown $ihe-pix parameter(s): {', '.join(unknown)}", location=unknown[0])
        sources = [v for n, v in params if n == "sourceIdentifier"]
        if len(sources) != 1:
            raise InvalidInput("exactly one sourceIdentifier=<system>|<value> is required", location="sourceIdentifier")
        source = identity.parse_token(sources[0], "sourceIdentifier")
        systems = list(dict.fromkeys(s for n, v in params if n == "targetSystem" for s in v.split(",") if s))
        if len(systems) > 2:
            raise InvalidInput("CH PIXm takes one or two targetSystem values", location="targetSystem")
        for system in systems:
            if not self._domain_known(system):
                raise AccessRefused(f"targetSystem {system} is not a patient identifier domain this MPI discloses")
        pid = self._resolve(source)
        record = self.patients.get(pid) if pid else None
        if record is None or not _in_context(principal, record):
            raise NotFound(f"sourceIdentifier {source.system}|… is not known to this MPI",
                           location="sourceIdentifier")
        known = [i for i in self._identifiers(record) if i != source]
        # In the order the domains were asked for (as the CH PIXm example answers); without targetSystem
        # (CH PIXm IN requires 1..2), the two domains of the EPR: the SPID and this community's MPI-PID.
        wanted = systems or [SPID_SYSTEM, self.mpi_system]
        targets = [next(i for i in known if i.system == s) for s in wanted if any(i.system == s for i in known)]
        query = [("sourceIdentifier", f"{source.system}|")] + [("targetSystem", s) for s in systems]
        self.auditor.write_now([self.auditor.record("ITI-83", principal, action="E", patient_spid=record.spid,
                                                    query=tuple(query))])
        return patient_mapping.pix_parameters(record.pid, targets)

    def _domain_known(self, system: str) -> bool:
        if system == identity.AHVN13_SYSTEM:
            return False  # never disclosed (see patient_mapping.disclosed)
        return system in (SPID_SYSTEM, self.mpi_system) or self.patients.system_known(system)

    def _resolve(self, identifier: Identifier, *, follow_merges: bool = True) -> str | None:
        if identifier.system == self.mpi_system:
            return self.patients.pid_for_mpi_pid(identifier.value, follow_merges=follow_merges)
        if identifier.system == identity.AHVN13_SYSTEM:
            identifier = Identifier(identifier.system, identifier.value.replace(".", ""))
        return self.patients.pid_for_identifier(identifier, follow_merges=follow_merges)

    def _identifiers(self, record: PatientRecord) -> list[Identifier]:
        """SPID, MPI-PID and the disclosed local ids of the patient and every patient merged into it."""
        group = self.patients.get_many(self.patients.pids_for(record.pid))
        ids = [Identifier(self.mpi_system, record.pid)]
        if record.spid:
            ids.insert(0, Identifier(SPID_SYSTEM, record.spid))
        return ids + patient_mapping.disclosed(i for r in group for i in r.identifiers)

    # -- ITI-78 -------------------------------------------------------------------------------
    @audited("ITI-78")
    def pdq(self, *, principal: Principal, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        _require_role(principal, IDENTITY_READERS, "search patient demographics")
        query = identity.parse_pdq(params)
        total, pids = self.patients.search(query, mpi_system=self.mpi_system)
        if principal.patient_spid is not None:  # an extended token sees its own patient only
            pids = [r.pid for r in self.patients.get_many(pids) if r.spid == principal.patient_spid]
            total = len(pids)
        names = tuple((n, "") for n, _ in params)
        self_url = f"{base_url}/Patient?" + "&".join(f"{quote(n, safe=':_')}={quote(v, safe=':|,.-_')}"
                                                     for n, v in params)
        if total > patient_mapping.MAX_PATIENTS_SHOWN:  # CH PDQm: none shown, more attributes asked for
            self.auditor.write_now([self.auditor.record("ITI-78", principal, action="E", query=names)])
            given = {n.removesuffix(":exact") for n, _ in params}
            return patient_mapping.too_many_matches(self_url=self_url,
                                                    wanted=patient_mapping.more_attributes_wanted(given))
        versioned = self.patients.get_many_versioned(pids)
        records = [r for r, _ in versioned]
        self.auditor.write_now([self.auditor.record("ITI-78", principal, action="E", patient_spid=r.spid,
                                                    query=names) for r in records]
                               or [self.auditor.record("ITI-78", principal, action="E", query=names)])
        resources = [patient_mapping.with_version(self._resource(r), v) for r, v in versioned]
        bundle = fhir_mapping.searchset(resources, total=total, self_url=self_url, next_url=None, base_url=base_url)
        for entry in bundle.get("entry", []):
            entry["search"]["score"] = 1  # exact match on every given criterion
        return bundle

    @audited("ITI-78")
    def read(self, *, principal: Principal, pid: str) -> dict[str, Any]:
        _require_role(principal, IDENTITY_READERS, "read patient identities")
        record = self.patients.get(pid)
        if record is None or not _in_context(principal, record):
            raise NotFound(f"Patient/{pid} is not known")
        self.auditor.write_now([self.auditor.record("ITI-78", principal, action="R", patient_spid=record.spid)])
        return patient_mapping.with_version(self._resource(record), self.patients.version_of(record.pid))

    def _resource(self, record: PatientRecord) -> dict[str, Any]:
        group = self.patients.pids_for(record.pid)
        local = [i for r in self.patients.get_many(group) for i in r.identifiers]
        return patient_mapping.pdqm_patient(record, community_oid=self.community_oid, identifiers=local,
                                            replaced_by=self.patients.links.replaced_by(record.pid), replaces=group[1:])

    # -- ITI-119 ------------------------------------------------------------------------------
    @audited("ITI-119")
    def match(self, *, principal: Principal, body: bytes, base_url: str) -> dict[str, Any]:
        """Patient/$match: a searchset of the MPI's patients most like the submitted one, best first,
        each with `search.score` and the match-grade extension. The same consent and audit as ITI-78."""
        _require_role(principal, IDENTITY_READERS, "match patient demographics")
        request = patient_matching.parse_match(fhir_mapping.parse_resource(body, "Parameters", limits=self.json_limits))
        identified = {pid for i in request.identifiers
                      for pid in [self.patients.pid_for_spid(i.value) if i.system == SPID_SYSTEM else self._resolve(i)]
                      if pid is not None}
        shared = shared_demographics(self.patients, request.demographics)
        complete = {"family", "given", "birthdate", "gender"}
        scored = []
        for pid in identified | set(shared):
            value = patient_matching.score(request, shared.get(pid, set()), pid in identified)
            grade = patient_matching.grade(value, complete=pid in identified or complete <= shared.get(pid, set()))
            if grade and (grade == "certain" or not request.only_certain):
                scored.append((value, grade, pid))
        # Best first; at an equal score a certain match (an identifier the MPI resolved) before weaker grades.
        scored.sort(key=lambda s: (-s[0], s[1] != "certain", s[2]))
        if principal.patient_spid is not None:  # an extended token sees its own patient only
            own = {r.pid for r in self.patients.get_many([pid for _, _, pid in scored])
                   if r.spid == principal.patient_spid}
            scored = [s for s in scored if s[2] in own]
        names = tuple((n, "") for n in request.criteria)
        shown = _shown(scored)
        if shown is None:  # CH PDQm: none shown, more attributes asked for
            self.auditor.write_now([self.auditor.record("ITI-119", principal, action="E", query=names)])
            return patient_mapping.too_many_matches(
                self_url=f"{base_url}/Patient/$match",
                wanted=patient_mapping.more_attributes_wanted(set(request.criteria)))
        chosen = shown[:request.count]
        versioned = {r.pid: (r, v) for r, v in self.patients.get_many_versioned([pid for _, _, pid in chosen])}
        records = {pid: r for pid, (r, _) in versioned.items()}
        self.auditor.write_now([self.auditor.record("ITI-119", principal, action="E", patient_spid=records[pid].spid,
                                                    query=names) for _, _, pid in chosen if pid in records]
                               or [self.auditor.record("ITI-119", principal, action="E", query=names)])
        entries = []
        for value, grade, pid in chosen:
            if pid not in records:
                continue
            entry = fhir_mapping.search_match(patient_mapping.with_version(self._resource(records[pid]),
                                                                           versioned[pid][1]), base_url=base_url)
            entry["search"] = {"mode": "match", "score": value,
                               "extension": [{"url": patient_matching.MATCH_GRADE, "valueCode": grade}]}
            entries.append(entry)
        bundle = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": len(entries),
                  "link": [{"relation": "self", "url": f"{base_url}/Patient/$match"}]}
        if entries:
            bundle["entry"] = entries
        return bundle

    # -- merge / unmerge ------------------------------------------------------------------------
    @audited("ITI-104")
    def merge(self, *, principal: Principal, body: bytes) -> dict[str, Any]:
        return self._link(principal, body, undo=False)

    @audited("ITI-104")
    def unmerge(self, *, principal: Principal, body: bytes) -> dict[str, Any]:
        return self._link(principal, body, undo=True)

    @audited("ITI-104")
    def merge_patients(self, *, principal: Principal, retired: str, surviving: str) -> dict[str, Any]:
        """The merge at the model level (an HL7 v2 ADT^A40 after mapping): MPI-PIDs, same rules and audit."""
        _require_role(principal, MERGERS, "merge or unmerge patients")
        return self._link_pids(principal, retired, surviving, undo=False)

    def _link(self, principal: Principal, body: bytes, *, undo: bool) -> dict[str, Any]:
        _require_role(principal, MERGERS, "merge or unmerge patients")
        parameters = fhir_mapping.parse_resource(body, "Parameters", limits=self.json_limits)
        source = self._merge_party(parameters, "source-patient")
        target = self._merge_party(parameters, "target-patient")
        return self._link_pids(principal, source, target, undo=undo)

    def _link_pids(self, principal: Principal, source: str, target: str, *, undo: bool) -> dict[str, Any]:
        records = {r.pid: r for r in self.patients.get_many((source, target))}

        def audit_in_transaction(connection) -> None:
            self.auditor.write(connection, [self.auditor.record("ITI-104", principal, action="U",
                                                                patient_spid=records[p].spid)
                                            for p in (source, target) if p in records])

        change = self.patients.links.unmerge if undo else self.patients.links.merge
        change(retired=source, surviving=target, within=audit_in_transaction)
        self.pages.identities_changed()  # whose documents a search finds has changed
        surviving = self.patients.get(target)
        what = "unmerged from" if undo else "merged into"
        outcome = {"resourceType": "OperationOutcome", "issue": [{
            "severity": "information", "code": "informational",
            "diagnostics": f"Patient/{source} {what} Patient/{target}"}]}
        return {"resourceType": "Parameters", "parameter": [
            {"name": "outcome", "resource": outcome},
            {"name": "result", "resource": patient_mapping.with_version(self._resource(surviving),
                                                                        self.patients.version_of(target))}]}

    def _merge_party(self, parameters: dict[str, Any], name: str) -> str:
        """The MPI-PID named, as is: an identifier names the patient that holds it, merged or not."""
        found = [p for p in parameters.get("parameter") or [] if p.get("name") == name]
        reference = patient_mapping.patient_reference(found[0]) if len(found) == 1 else None
        if reference is None:
            raise InvalidInput(f"exactly one {name} (valueReference Patient/<id> or valueIdentifier) is required",
                               location=f"Parameters.parameter.where(name='{name}')")
        kind, value = reference
        if kind == "pid":
            return value
        pid = self._resolve(identity.parse_token(value, name), follow_merges=False)
        if pid is None:
            raise NotFound(f"the {name} identifier is not known to this MPI",
                           location=f"Parameters.parameter.where(name='{name}')")
        return pid

    # -- identity review list -------------------------------------------------------------------
    @audited("identity-review")
    def reviews(self, *, principal: Principal, params: list[tuple[str, str]] = ()) -> dict[str, Any]:
        _require_role(principal, REVIEWERS, "read the identity review list")
        if params:  # strict like every search: a filter the list does not apply is an error, not ignored
            raise InvalidInput("the identity review list takes no search parameters",
                               location="identity-reviews?" + "&".join(sorted({n for n, _ in params})))
        reviews = self.patients.reviews.open_reviews()
        self.auditor.write_now([self.auditor.record("identity-review", principal, action="R")])
        return {"reviews": [_review_json(r) for r in reviews]}

    @audited("identity-review")
    def resolve_review(self, *, principal: Principal, review_id: str) -> dict[str, Any]:
        _require_role(principal, REVIEWERS, "resolve identity reviews")
        review = self.patients.reviews.resolve(review_id)
        self.auditor.write_now([self.auditor.record("identity-review", principal, action="U")])
        if review.pid:
            for follower in self.review_resolved:
                follower(review.pid)
        return _review_json(review)


def _source_identifier(value: str | None) -> Identifier:
    system, _, local = (value or "").partition("|")
    if not system or not local:
        raise InvalidInput("ITI-104 needs ?identifier=<system>|<value> naming the source identifier",
                           location="identifier")
    return Identifier(system, local)


def _in_context(principal: Principal, record: PatientRecord) -> bool:
    """Whether a token bound to a patient (extended token) may be answered about this one. Another
    patient is answered exactly like one the MPI does not know (404), never with a 403 that would
    confirm the identifier exists."""
    return principal.patient_spid is None or principal.patient_spid == record.spid


def _require_role(principal: Principal, roles: frozenset[str], what: str) -> None:
    if principal.role not in roles:
        raise AccessRefused(f"role {principal.role} may not {what}")


def _shown(scored: list[tuple[float, str, str]]) -> list[tuple[float, str, str]] | None:
    """The matches an ITI-119 answer may show (CH PDQm: at most five), or None when they are too many.
    Certain matches (an identifier the MPI resolved, or all four demographics) are not drowned by weaker
    ones: past five matches, the certain ones alone are shown if they are five or fewer."""
    if len(scored) <= patient_mapping.MAX_PATIENTS_SHOWN:
        return scored
    certain = [s for s in scored if s[1] == "certain"]
    return certain if 0 < len(certain) <= patient_mapping.MAX_PATIENTS_SHOWN else None


def _review_json(review: IdentityReview) -> dict[str, Any]:
    return {"id": review.id, "created": review.created_at.isoformat(timespec="seconds") + "Z",
            "reason": review.reason, "description": identity.REVIEW_REASONS[review.reason],
            "patient": f"Patient/{review.pid}" if review.pid else None, "status": review.status,
            "incoming": {"source": review.details["source"], **review.details["incoming"]}}
