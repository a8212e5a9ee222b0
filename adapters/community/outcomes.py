"""What one delivery attempt came to, in the deliverer's terms (issue 24 items 1–4).

Each outcome says what the outbox does next: `Delivered` and `AlreadyDelivered` end the delivery
(the latter: the community already holds this submission set, an earlier attempt landed and its answer
was lost); `Conflict` and `Rejected` end it as failed for an operator, with the community's own codes
and text; `RaiseConfidentiality` retries at the next higher level (never lower); `TransportFailure`
retries with backoff (the answer says nothing about the document: connection, timeout, HTTP 5xx,
SOAP fault, an answer that cannot be read); `WaitingPatient` retries once the community knows the
patient. Every registry error the community sent is kept with the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegistryError:
    code: str  # errorCode (XDSRegistryError, XDSRepositoryError, XDSDuplicateUniqueIdInRegistry, …)
    context: str  # codeContext (the community's text)
    location: str | None
    severity: str  # Error | Warning (the last part of the ebRS severity URN)

    def __str__(self) -> str:
        return f"{self.code}: {self.context}" + (f" (at {self.location})" if self.location else "")


@dataclass(frozen=True)
class Delivered:
    warnings: tuple[RegistryError, ...] = ()
    kind = "delivered"


@dataclass(frozen=True)
class AlreadyDelivered:
    """The community already holds this submission set: the earlier attempt landed."""

    errors: tuple[RegistryError, ...]
    kind = "already-delivered"


@dataclass(frozen=True)
class Conflict:
    """A document uniqueId the community holds under another submission set (or with other bytes)."""

    submission_set_unique_id: str
    document_unique_ids: tuple[str, ...]
    code: str
    text: str
    errors: tuple[RegistryError, ...]
    kind = "conflict"


@dataclass(frozen=True)
class RaiseConfidentiality:
    """The community's consent filter refused this confidentiality (below the patient's provide level)."""

    refused: str  # normal | restricted
    next_level: str  # restricted | secret
    code: str
    text: str
    errors: tuple[RegistryError, ...]
    kind = "raise-confidentiality"


@dataclass(frozen=True)
class Rejected:
    code: str
    text: str
    errors: tuple[RegistryError, ...] = ()
    kind = "rejected"


@dataclass(frozen=True)
class TransportFailure:
    text: str
    soap_fault: bool = False  # the repository answered a SOAP fault (it may be about the assertion)
    kind = "transport"


@dataclass(frozen=True)
class WaitingPatient:
    text: str
    kind = "waiting-patient"


Outcome = Delivered | AlreadyDelivered | Conflict | RaiseConfidentiality | Rejected | TransportFailure | WaitingPatient
