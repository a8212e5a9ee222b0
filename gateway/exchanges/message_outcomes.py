"""A document message as the HL7 v2 use-cases take it, and what they did with a message: the outcomes
the face turns into acknowledgements with its one table (`gateway/mllp/acks.py`). Kept apart from the
ACK's bytes so that every use-case answers in the same few terms, and the face alone knows HL7's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.cara.model import Submission
from consent.principal import Principal
from gateway.exchanges.message_answers import MessageKey
from gateway.exchanges.patient_readiness import PatientClaim, Readiness


@dataclass(frozen=True)
class IncomingDocument:
    """A document message read, its sender identified and mapped to the record's model: what the
    document use-cases need (the SPID is still to resolve, from `claim`). `message` is the face's own
    (it builds the answers from it); the use-cases pass it through."""

    key: MessageKey
    principal: Principal
    submission: Submission
    claim: PatientClaim
    raw: bytes  # as received: what a hold keeps (sealed)
    transaction: str  # "HL7v2 MDM^T02", as the audit records name it
    message: Any = None


@dataclass(frozen=True)
class Stored:
    """The document is in the record (stored now, or found already present)."""


@dataclass(frozen=True)
class Held:
    """The message is kept, sealed, until its patient is ready (`readiness` says why and what releases it)."""

    readiness: Readiness


@dataclass(frozen=True)
class Unready:
    """Not held: refused because of its patient (unknown to the MPI: the sender feeds it first)."""

    readiness: Readiness


@dataclass(frozen=True)
class Registered:
    """An ADT^A08 fed the MPI."""


@dataclass(frozen=True)
class Merged:
    """An ADT^A40 merged two patients."""


@dataclass(frozen=True)
class ReviewOpened:
    """An ADT^A08 the MPI did not take as is: the case waits on the review list."""

    reason: str
    review_id: str


@dataclass(frozen=True)
class Refused:
    """Refused for what it says or asks (`error`: a MessageError, a RecordError, an AccessRefused, or a
    content failure — see `failures.is_content_failure`): nothing of it stored, the refusal audited."""

    error: Exception


@dataclass(frozen=True)
class TryAgain:
    """The gateway could not process it now (a dependency, or its own fault): nothing stored, the
    answer not kept, so the sender's next try is processed afresh."""

    error: Exception | None = None


STORED = Stored()
REGISTERED = Registered()
MERGED = Merged()
Outcome = Stored | Held | Unready | Registered | Merged | ReviewOpened | Refused | TryAgain
