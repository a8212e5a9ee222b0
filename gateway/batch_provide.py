"""Many provides in one transaction: the batch use-case behind `Exchange.provide_many`.

Why: one ITI-65 document costs a transaction, a ledger lock and an fsync (~8 ms on SQLite). A
migration or an HL7 v2 listener has thousands of submissions waiting; each one still gets exactly
the steps of `Exchange.provide_submission` (patient context, PID look-up, `_authorise_upload` with the
provide level, idempotency by uniqueId and SHA-1, encryption, one ATC_DOC_CREATE record per document),
but they share one transaction, one ledger append (one lock, one head read, one multi-row insert) and
one commit. Each submission is all-or-nothing: a refused one is audited (outcome 4, in the same
transaction) and leaves nothing stored, without affecting the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from adapters.cara.errors import RecordError, UnknownPatient
from adapters.cara.model import Submission
from adapters.cara.store.documents import BatchItem, ProvideResult
from consent.principal import Principal
from gateway.auth.errors import AccessRefused

if TYPE_CHECKING:
    from gateway.exchange import Exchange


@dataclass(frozen=True)
class BatchOutcome:
    submission: Submission  # as given
    result: ProvideResult | None  # stored (created) or already present; None when refused
    stored: Submission | None  # the submission as stored (levels raised), None when refused
    error: Exception | None  # why it was refused (a RecordError / AccessRefused); nothing of it stored

    @property
    def created(self) -> bool:
        """At least one document of it was stored by this call (not only found already present)."""
        return self.result is not None and any(d.created for d in self.result.documents)


def provide_many(exchange: Exchange, *, principal: Principal, submissions: Sequence[Submission],
                 within: Callable[[Connection, list[BatchOutcome]], None] | None = None) -> list[BatchOutcome]:
    """See `Exchange.provide_many`. `within(connection, outcomes)` runs in the batch's transaction
    after the audit records (a migration journals its progress there, so that progress and documents
    commit together)."""
    outcomes: list[BatchOutcome | None] = [None] * len(submissions)
    refusals = []  # audit records of submissions refused before the store was asked
    authorised: list[tuple[int, Submission, str]] = []
    for index, submission in enumerate(submissions):
        try:
            exchange.access.require_patient_context(principal, submission.spid)
            pid = exchange.patients.pid_for_spid(submission.spid)
            if pid is None:
                raise UnknownPatient(f"EPR-SPID {submission.spid} is not registered in this community",
                                     location="List.subject.identifier")
            authorised.append((index, exchange._authorise_upload(principal, submission, pid), pid))
        except (RecordError, AccessRefused) as error:
            outcomes[index] = BatchOutcome(submission, None, None, error)
            refusals.append(exchange.auditor.failure_record("ITI-65", principal, error))
    auditor = exchange.auditor

    def in_transaction(connection: Connection, results: list) -> None:
        records = list(refusals)
        for (index, stored, _pid), result in zip(authorised, results, strict=True):
            submission = submissions[index]
            if isinstance(result, ProvideResult):
                outcomes[index] = BatchOutcome(submission, result, stored, None)
                created = [d.entry for d, p in zip(stored.documents, result.documents, strict=True) if p.created]
                records.append(auditor.record(
                    "ITI-65", principal, atc_code="ATC_DOC_CREATE" if created else None, patient_spid=stored.spid,
                    documents=tuple(auditor.document(e) for e in created),
                    submission_set_unique_id=stored.submission_set.unique_id))
            else:
                outcomes[index] = BatchOutcome(submission, None, None, result)
                records.append(auditor.failure_record("ITI-65", principal, result, patient_spid=stored.spid))
        auditor.write_many(connection, records)
        if within is not None:
            within(connection, outcomes)  # type: ignore[arg-type]

    exchange.documents.provide_many([BatchItem(stored, pid) for _, stored, pid in authorised], within=in_transaction)
    for outcome, (_, _, pid) in zip((outcomes[i] for i, _, _ in authorised), authorised, strict=True):
        if outcome is not None and outcome.created:
            exchange.pages.documents_changed(pid)
    return outcomes  # type: ignore[return-value]
