"""Exceptions of the consent package.

They derive from the shared record's `ProfileViolation` so the gateway's single error mapping turns
them into a 422 OperationOutcome with the location of the fault, without consent importing the gateway.
"""

from __future__ import annotations

from adapters.cara.errors import ProfileViolation


class ConsentInvalid(ProfileViolation):
    """A CH:PPQm Consent that does not describe a valid policy set.

    `location` is a FHIRPath-like pointer into the Consent (e.g. `Consent.provision.period.end`).
    """

    def __init__(self, message: str, location: str):
        super().__init__(message, location=location)
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class ProvideLevelViolation(ProfileViolation):
    """An upload below the patient's provide level (template 203) while the gateway rejects instead of raising."""

    def __init__(self, *, requested: str, minimum: str):
        super().__init__(f"confidentiality {requested} is below the patient's provide level {minimum}",
                         location="DocumentReference.securityLabel")
        self.requested = requested
        self.minimum = minimum


class PolicyInvalid(ValueError):
    """A Policy built inside the gateway breaks a template rule; it must never be turned into a Consent."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems
