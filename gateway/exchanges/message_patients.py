"""Patient messages (ADT^A08 feed, ADT^A40 merge) through the identity use-cases, as a sender's technical
user: the same rules, vigilance and audit as the FHIR feed and $merge.

A sender merges only identities of its own assigning authorities (issue 22 item 7): the patients of
an A40 are found through the PID-3 / MRG-1 ids in the authorities the senders file gives the sender
(`Sender.authorities`), never through another institution's ids nor an EPR-SPID; a list without any
such id is refused (AE naming the field), nothing changed, audited by the face with the refusal.
"""

from __future__ import annotations

from adapters.cara.identity import IdentityConflict
from adapters.cara.model import Identifier, PatientRecord
from adapters.cara.store.patients import DatabasePatientIndex
from adapters.infomed.hl7v2.errors import TABLE_VALUE_NOT_FOUND, UNKNOWN_KEY, SenderMustFix
from consent.principal import Principal
from gateway.exchanges.documents import DocumentExchange
from gateway.exchanges.identity import IdentityExchange
from gateway.exchanges.message_outcomes import MERGED, REGISTERED, Registered, ReviewOpened


class PatientMessages:
    def __init__(self, *, exchange: DocumentExchange, identities: IdentityExchange, patients: DatabasePatientIndex):
        self._exchange = exchange
        self._identities = identities
        self._patients = patients

    def feed(self, *, principal: Principal, source: Identifier, incoming: PatientRecord) -> Registered | ReviewOpened:
        """ITI-104 at the model level; a conflict the MPI keeps on the review list is accepted as such."""
        try:
            self._identities.register_patient_record(principal=principal, source=source, incoming=incoming)
        except IdentityConflict as conflict:
            return ReviewOpened(conflict.reason, conflict.review_id)
        return REGISTERED

    def merge(self, *, principal: Principal, surviving: tuple[Identifier, ...], retired: tuple[Identifier, ...],
              authorities: frozenset[str]):
        """Retire MRG-1's patient into PID-3's, each found through the sender's own authorities only."""
        kept = self._pid(surviving, authorities, ("PID", 3))
        gone = self._pid(retired, authorities, ("MRG", 1))
        self._identities.merge_patients(principal=principal, retired=gone, surviving=kept)
        return MERGED

    def _pid(self, identifiers: tuple[Identifier, ...], authorities: frozenset[str], where: tuple[str, int]) -> str:
        own = [i for i in identifiers if i.system in authorities]
        if not own:
            others = ", ".join(sorted({i.system for i in identifiers}))
            raise SenderMustFix(f"{where[0]}-{where[1]} names no patient id of this sender's assigning authorities "
                                f"(it names {others}): a sender merges only its own identities",
                                code=TABLE_VALUE_NOT_FOUND, segment=where[0], field=where[1])
        for identifier in own:
            pid = self._patients.pid_for_identifier(identifier, follow_merges=False)
            if pid:
                return pid
        systems = ", ".join(sorted({i.system for i in own}))
        raise SenderMustFix(f"unknown patient: {where[0]}-{where[1]} {systems} is not in the MPI", code=UNKNOWN_KEY,
                            segment=where[0], field=where[1])
