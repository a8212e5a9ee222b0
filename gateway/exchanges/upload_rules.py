"""What every provide path decides before a document is stored, whoever sends it (ITI-65, an HL7 v2
MDM/ORU, an XDM package): provenance from the principal, the record's provide level, the write
decision at the level the document will be stored with, and the documents it names.

Naming another document (relatesTo of every code, an HL7 v2 parent, an XDM RPLC/APND) follows one
rule (`may_name`): the target must be a live document of the same (surviving) patient that the
principal may read, or one the same user submitted earlier on behalf of the same responsible
professional (a technical user never reads, but may replace what it migrated or sent itself).
Anything else — missing, another patient's, deleted (CH:MHD-1, DADM), unreadable — gets the one answer of a target
that does not exist (`errors.unknown_relation_target`), so the answer is no existence oracle. The
same rule decides whether a resubmitted uniqueId may be answered with the stored copy (see
`batch_provide`): only to whom may name it.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import replace

from adapters.cara.errors import unknown_relation_target
from adapters.cara.model import DocumentEntry, Submission
from adapters.cara.store.documents import DatabaseDocumentStore
from adapters.cara.store.patients import DatabasePatientIndex
from consent.pdp import Decision
from consent.principal import Principal
from gateway.exchanges.access import AccessControl, Members
from gateway.exchanges.provenance import submitter_of, with_provenance


class UploadRules:
    def __init__(self, *, documents: DatabaseDocumentStore, patients: DatabasePatientIndex, access: AccessControl):
        self._documents = documents
        self._patients = patients
        self._access = access

    def authorise(self, principal: Principal, submission: Submission, pid: str, *,
                  earlier_in_batch: AbstractSet[tuple[str, str]] = frozenset()) -> Submission:
        """The submission as it will be stored: provenance from the principal (`provenance`), each
        document raised to the record's provide level (never lowered), then the write decided at the
        level it will be stored with, then every document it names (`authorise_relations`). Any
        refusal (AccessRefused, a RecordError) refuses the whole submission.
        `earlier_in_batch`: (MPI-PID, uniqueId) of the documents this principal submits earlier in the
        same batch, not stored yet (see `authorise_relations`)."""
        members = self._patients.record_of(pid)
        spid = members[0][1] or submission.spid  # the surviving patient's: documents stay with it
        documents = []
        for document in submission.documents:
            document = with_provenance(principal, document)
            level = self._access.upload_level(document.entry.confidentiality_level, pid=pid, spid=spid, group=members)
            self._access.require(principal, spid=spid, pid=pid, action="write", confidentiality=level, group=members)
            if level != document.entry.confidentiality_level:
                document = replace(document, entry=document.entry.with_confidentiality_level(level))
            documents.append(document)
        submission = replace(submission, documents=tuple(documents))
        self.authorise_relations(principal, submission, pid, earlier_in_batch=earlier_in_batch)
        return submission

    def authorise_relations(self, principal: Principal, submission: Submission, pid: str, *,
                            earlier_in_batch: AbstractSet[tuple[str, str]] = frozenset()) -> None:
        """Every document a submission names must be nameable by `principal` (`require_nameable`). A
        target the same principal submits earlier in the same batch is its own submission, like a
        stored one it submitted (the store still checks that it is accepted before this one)."""
        for document in submission.documents:
            for relation in document.relations:
                if relation.target_unique_id and (pid, relation.target_unique_id) in earlier_in_batch:
                    continue
                self.require_nameable(principal, pid=pid, entry_id=relation.target_entry_id,
                                      unique_id=relation.target_unique_id)

    def require_nameable(self, principal: Principal, *, pid: str, entry_id: str | None = None,
                         unique_id: str | None = None) -> DocumentEntry:
        """The target a request names by logical id or uniqueId, if `principal` may name it for the
        patient `pid` (surviving MPI-PID); otherwise `unknown_relation_target` and nothing changes."""
        target = self._documents.named_entry(entry_id=entry_id, unique_id=unique_id)
        if target is None or not self.may_name(principal, target, pid=pid):
            raise unknown_relation_target(entry_id or unique_id or "")
        return target

    def may_name(self, principal: Principal, target: DocumentEntry, *, pid: str) -> bool:
        """The rule of this module's docstring, for a stored entry (opened at its current version)."""
        if target.status == "deleted" or self._patients.surviving_pid(target.patient_pid) != pid:
            return False
        if target.submitter is not None and target.submitter == submitter_of(principal):
            return True
        return self.read_decision(principal, target)[0].permit

    def read_decision(self, principal: Principal, entry: DocumentEntry) -> tuple[Decision, str | None, Members]:
        """(decision, the entry's own patient's SPID, its merged record) for reading `entry`: decided
        under its own patient's policies and every restriction of the patients merged with it
        (`AccessControl.owner_policies`), never under another patient's grants."""
        members = self._patients.record_of(entry.patient_pid)
        spid = dict(members).get(entry.patient_pid)
        if spid is None:
            return Decision(False, "the document's patient has no SPID"), None, members
        decision = self._access.decide(principal, spid=spid, pid=entry.patient_pid, action="read",
                                       confidentiality=entry.confidentiality_level, group=members)
        return decision, spid, members
