"""What a delivery attempt's outcome means for its outbox row (issue 24 items 1-4): the next state, when
it is due again, the confidentiality of the next attempt, what is kept of the answer — one table, read
by `delivery.py`.

| the community answered                | the row                          | the ledger's outcome |
|---------------------------------------|----------------------------------|----------------------|
| success / duplicate submission set    | delivered (receipt kept)         | 0                    |
| consent filter refused the level      | pending now, at the next level   | 4                    |
| duplicate document, other set / hash  | failed, with both ids            | 4                    |
| any other refusal (unknown code, …)   | failed, the community's code     | 4                    |
| transport (network, 5xx, SOAP fault,  | pending after a backoff (jitter) | 8                    |
|   STS or PIX manager down)            |                                  |                      |
| the community does not know the patient | waiting-patient, retried       | 4                    |
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from adapters.cara.store.outbox import (
    DELIVERED,
    FAILED,
    PENDING,
    WAITING_PATIENT,
    Attempt,
    Backoff,
    Delivery,
    Finish,
)
from adapters.community.outcomes import (
    AlreadyDelivered,
    Conflict,
    Delivered,
    Outcome,
    RaiseConfidentiality,
    Rejected,
    TransportFailure,
    WaitingPatient,
)
from adapters.community.source import ProvideAnswer

LEDGER_OUTCOME = {"delivered": "0", "already-delivered": "0", "transport": "8"}  # anything else: 4 (refused)


@dataclass(frozen=True)
class Retries:
    transport: Backoff  # transport-class failures (also an STS or PIX manager down)
    waiting: Backoff  # the community does not know the patient (yet), or the record waits here


def finish_of(delivery: Delivery, answer: ProvideAnswer, *, started: datetime, now: datetime, version: int,
              retries: Retries) -> Finish:
    """The row's next state after `answer` (one attempt at `answer.attempt.confidentiality`)."""
    outcome, sent = answer.outcome, answer.attempt
    attempt = Attempt(outcome=outcome.kind, started_at=started, finished_at=now, confidentiality=sent.confidentiality,
                      code=code_of(outcome), text=text_of(delivery, outcome), answer=answer_of(answer))
    patient = sent.mpi_pid
    match outcome:
        case Delivered() | AlreadyDelivered():
            receipt = {"outcome": outcome.kind, "submission_set_unique_id": sent.submission_set_unique_id,
                       "entry_uuids": list(sent.entry_uuids), "confidentiality": sent.confidentiality,
                       "community_patient_id": patient, "message_id": sent.message_id, "version": version,
                       "registry_errors": [_error(e) for e in _errors(outcome)]}
            if outcome.locations:  # the community's own reference of each document (MHD): a replacement names it
                receipt["locations"] = dict(outcome.locations)
            return Finish(delivery, attempt, DELIVERED, community_patient_id=patient, receipt=receipt)
        case RaiseConfidentiality():
            return Finish(delivery, attempt, PENDING, retry_at=now, confidentiality=outcome.next_level,
                          community_patient_id=patient)
        case Conflict() | Rejected():
            return Finish(delivery, attempt, FAILED, community_patient_id=patient)
        case WaitingPatient():
            return Finish(delivery, attempt, WAITING_PATIENT, retry_at=now + retries.waiting.delay(delivery.attempts))
        case _:  # TransportFailure: nothing is known; the same submission again later
            return Finish(delivery, attempt, PENDING, retry_at=now + retries.transport.delay(delivery.attempts),
                          community_patient_id=patient)


def code_of(outcome: Outcome) -> str | None:
    match outcome:
        case Conflict() | Rejected() | RaiseConfidentiality():
            return outcome.code
        case AlreadyDelivered():  # the registry's duplicate error (XDS.b); an MHD recipient answers 200, no code
            return outcome.errors[0].code if outcome.errors else None
        case TransportFailure():
            return "soap-fault" if outcome.soap_fault else "transport"
        case WaitingPatient():
            return "patient-unknown"
    return None


def text_of(delivery: Delivery, outcome: Outcome) -> str | None:
    match outcome:
        case Conflict():
            return (f"the community holds document {', '.join(outcome.document_unique_ids)} under another "
                    f"submission set than this delivery's {outcome.submission_set_unique_id} "
                    f"({outcome.code}: {outcome.text})")
        case RaiseConfidentiality():
            return (f"the community's consent filter refused {outcome.refused} ({outcome.code}: {outcome.text}); "
                    f"next attempt at {outcome.next_level}")
        case AlreadyDelivered():
            return (f"the community already held submission set {delivery.submission_set_unique_id}: an earlier "
                    "attempt landed and its answer was lost")
        case Rejected() | TransportFailure() | WaitingPatient():
            return outcome.text
    return None


def answer_of(answer: ProvideAnswer) -> str:
    """What the attempt keeps of the community's answer: the outcome, the registry's errors and warnings
    (code, context, location), the MPI-PID and the message id it answered."""
    outcome = answer.outcome
    kept = {"outcome": outcome.kind, "registry_errors": [_error(e) for e in _errors(outcome)],
            "mpi_pid": answer.attempt.mpi_pid, "message_id": answer.attempt.message_id}
    if isinstance(outcome, Conflict):
        kept["documents"] = list(outcome.document_unique_ids)
    return json.dumps(kept, sort_keys=True, ensure_ascii=False)


def _errors(outcome: Outcome) -> tuple:
    return getattr(outcome, "errors", None) or getattr(outcome, "warnings", None) or ()


def _error(error) -> dict:
    return {"code": error.code, "context": error.context, "location": error.location, "severity": error.severity}
