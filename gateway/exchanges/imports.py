"""Use-cases of a bulk import (the Infomed migration) beside `DocumentExchange.provide_many`.

- `patients_for_import`: each document's local patient id (ITI-104 fed) → the patient's SPID, or why
  its documents must wait: unknown patient, no EPR (no SPID, or never onboarded), an open identity
  review, or demographics in the document that disagree with the MPI (identity vigilance: held for a
  person to decide, never guessed).
- `compare_content`: `migrate verify` — the stored bytes of a migrated document against the source's,
  inside the gateway: the answer is "same" or the first difference, never the content. Decided as a
  write by the migration's technical user (TCU may write, never read) and audited (ITI-68, outcome,
  not in the patient's trail: nothing left the record).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from adapters.cara.model import Identifier
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.exchanges.documents import DocumentExchange

UNKNOWN_PATIENT = "unknown-patient"
NO_EPR = "no-epr"
IDENTITY_REVIEW = "identity-review"
IDENTITY_CONFLICT = "identity-conflict"


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


def _fold(value: str | None) -> str | None:
    return unicodedata.normalize("NFC", value).casefold().strip() if value else None


class ImportExchange:
    def __init__(self, *, exchange: DocumentExchange):
        self.exchange = exchange

    def patients_for_import(self, *, principal: Principal,
                            requests: list[PatientRequest]) -> dict[PatientRequest, ImportPatient]:
        """Each request's patient, for a whole batch: the MPI is asked once for all of them
        (`resolve_many`: four statements however many patients), the onboarding policies come from
        the policy cache."""
        if principal.role != "TCU":
            raise AccessRefused("bulk imports are made by a technical user (TCU)")
        distinct = list(dict.fromkeys(requests))
        resolved = self.exchange.patients.resolve_many([(r.identifier,) for r in distinct])
        return {request: self._import_patient(request, resolved[(request.identifier,)]) for request in distinct}

    def _import_patient(self, request: PatientRequest, resolved) -> ImportPatient:
        if resolved is None:
            return ImportPatient(None, UNKNOWN_PATIENT, f"patient id in {request.identifier.system} is not in the "
                                                         "MPI (not fed by ITI-104)")
        if resolved.under_review:
            return ImportPatient(None, IDENTITY_REVIEW, "the patient's identity is under review")
        record = resolved.record
        if record is None or record.spid is None:
            return ImportPatient(None, NO_EPR, "the patient has no EPR (no EPR-SPID)")
        if not self.exchange.access.policies(resolved.pid):
            return ImportPatient(None, NO_EPR, "the patient's EPR is not opened (no onboarding policies)")
        differ = []
        if request.family and record.family and _fold(request.family) != _fold(record.family):
            differ.append("family name")
        if request.given and record.given and _fold(request.given[0]) != _fold(record.given[0]):
            differ.append("given name")
        if request.birth_date and record.birth_date and request.birth_date != record.birth_date:
            differ.append("birth date")
        if request.gender and record.gender and request.gender != record.gender:
            differ.append("gender")
        if differ:
            # The reason names the fields only: the report and the journal carry no demographics.
            return ImportPatient(None, IDENTITY_CONFLICT,
                                 f"sourcePatientInfo {', '.join(differ)} differ from the MPI: held for review")
        return ImportPatient(record.spid)

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
