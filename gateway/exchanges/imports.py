"""Use-cases of a bulk import (the Infomed migration) beside `DocumentExchange.provide_many`.

- `patients_for_import`: each document's local patient id (ITI-104 fed) and sourcePatientInfo → the
  patient's SPID, or why its documents must wait — by the one rule the HL7 v2 bridge follows too
  (`patient_readiness`): unknown patient, no EPR, EPR not opened, demographics that differ from the
  MPI (a review case is opened), an open identity review. Each reason says what releases it, then
  `migrate retry`.
- `compare_content`: `migrate verify` — the stored bytes of a migrated document against the source's,
  inside the gateway: the answer is "same" or the first difference, never the content. Decided as a
  write by the migration's technical user (TCU may write, never read) and audited (ITI-68, outcome,
  not in the patient's trail: nothing left the record).
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.cara.model import Identifier
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.exchanges.documents import DocumentExchange
from gateway.exchanges.patient_readiness import (
    EPR_NOT_OPENED,
    IDENTITY_CONFLICT,
    IDENTITY_REVIEW,
    NO_EPR,
    UNKNOWN_PATIENT,
    PatientClaim,
    PatientReadiness,
)

__all__ = ["EPR_NOT_OPENED", "IDENTITY_CONFLICT", "IDENTITY_REVIEW", "NO_EPR", "UNKNOWN_PATIENT", "ImportExchange",
           "ImportPatient", "PatientRequest"]
RETRY = "; then `epr-gateway held --release --as-gln <GLN>`"


@dataclass(frozen=True)
class ImportPatient:
    spid: str | None
    hold_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class PatientRequest:
    """A document's patient as the source names it: its local identifier and sourcePatientInfo."""

    identifier: Identifier
    family: str | None
    given: tuple[str, ...]
    birth_date: str | None
    gender: str | None

    @property
    def claim(self) -> PatientClaim:
        return PatientClaim((self.identifier,), self.family, self.given, self.birth_date, self.gender)


class ImportExchange:
    def __init__(self, *, exchange: DocumentExchange, dry_run: bool = False):
        self.exchange = exchange
        # A dry run stores nothing: not even the review case a conflict would open.
        self.readiness = PatientReadiness(patients=exchange.patients, access=exchange.access, open_cases=not dry_run)

    def patients_for_import(self, *, principal: Principal,
                            requests: list[PatientRequest]) -> dict[PatientRequest, ImportPatient]:
        """Each request's patient, for a whole batch: the MPI is asked once for all of them
        (`PatientReadiness.check_many`), the onboarding policies come from the policy cache."""
        if principal.role != "TCU":
            raise AccessRefused("bulk imports are made by a technical user (TCU)")
        distinct = list(dict.fromkeys(requests))
        checked = self.readiness.check_many([request.claim for request in distinct])
        answers = {}
        for request in distinct:
            readiness = checked[request.claim]
            answers[request] = (ImportPatient(readiness.spid) if readiness.ready else
                                ImportPatient(None, readiness.hold, readiness.explained(RETRY)))
        return answers

    def compare_content(self, *, principal: Principal, unique_id: str, content: bytes) -> str | None:
        """None when the record holds exactly `content` under `unique_id`, else the first difference."""
        exchange = self.exchange
        entry = exchange.documents.entry_for_unique_id(unique_id)
        if entry is None:
            return f"{unique_id} is not in the record"
        pid = exchange.patients.surviving_pid(entry.patient_pid)
        record = exchange.patients.get(pid)
        spid = record.spid if record else None
        try:
            if spid is None:
                raise AccessRefused("the document's patient has no EPR-SPID")
            exchange.access.require(principal, spid=spid, pid=pid, action="write",
                                    confidentiality=entry.confidentiality_level)
            stored = exchange.documents.read_content(entry)
        except Exception as error:
            exchange.auditor.failure("ITI-68", principal, error, patient_spid=spid)
            raise
        exchange.auditor.write_now([exchange.auditor.record("ITI-68", principal, patient_spid=spid,
                                                            documents=(exchange.auditor.document(entry),))])
        if stored == content:
            return None
        if len(stored) != len(content):
            return f"{unique_id}: the record holds {len(stored)} bytes, the source {len(content)}"
        first = next(i for i, (a, b) in enumerate(zip(stored, content, strict=True)) if a != b)
        return f"{unique_id}: the bytes differ from offset {first}"
