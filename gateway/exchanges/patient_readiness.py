"""One rule for "is this patient ready to receive documents", for every face that files documents in
bulk under a patient named by a local id: the HL7 v2 bridge (live and released messages) and the
migration. The same checks give the same reasons on both, and each reason says what releases it.

In order, a document's patient (its claim: the ids it names and the demographics it carries) is
- unknown-patient: no id it names is in the MPI;
- no-epr: known, but without an EPR-SPID;
- epr-not-opened: with a SPID, but the EPR is not opened (no onboarding policies);
- identity-conflict: its demographics (family, given name, birth date, gender) differ from the MPI's.
  A review case is opened (one per patient and claimed identity) and /admin/identity-reviews lists
  it; resolving it accepts that identity for the patient: the documents are filed under it;
- identity-review: an open review case about the patient's identity (an ITI-104 or A08 feed the MPI
  refused) names it or a patient merged into it — a case about a document's claim holds that claim's
  documents only;
- else ready, with its SPID.
Identity vigilance: a patient is never guessed, and a document is never filed under a patient whose
identity a person has not confirmed. Reasons name fields and case ids, never a patient's value.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from adapters.cara.identity import DOCUMENT_DEMOGRAPHICS_DIFFER
from adapters.cara.model import Identifier, PatientRecord
from adapters.cara.store.patients import DatabasePatientIndex
from gateway.exchanges.access import AccessControl

UNKNOWN_PATIENT = "unknown-patient"
NO_EPR = "no-epr"
EPR_NOT_OPENED = "epr-not-opened"
IDENTITY_CONFLICT = "identity-conflict"
IDENTITY_REVIEW = "identity-review"
REVIEWS_PAGE = "/admin/identity-reviews"
# What fixes each cause (the faces add their own command; see `Readiness.explained`).
FIXED_WHEN = {
    UNKNOWN_PATIENT: "the patient is fed (ITI-104 or ADT^A08)",
    NO_EPR: "the patient's EPR-SPID is fed and the EPR opened (onboarding)",
    EPR_NOT_OPENED: "the patient's EPR is opened (onboarding)",
    IDENTITY_CONFLICT: f"the case is resolved at {REVIEWS_PAGE}",
    IDENTITY_REVIEW: f"the case is resolved at {REVIEWS_PAGE}",
}


@dataclass(frozen=True)
class PatientClaim:
    """Who a document says its patient is: the ids it names (the first the MPI knows counts) and the
    demographics it carries (None: not given, so no difference)."""

    identifiers: tuple[Identifier, ...]
    family: str | None = None
    given: tuple[str, ...] = ()
    birth_date: str | None = None
    gender: str | None = None

    @property
    def demographics(self) -> tuple:
        return _fold(self.family), _fold(self.given[0] if self.given else None), self.birth_date, self.gender


@dataclass(frozen=True)
class Readiness:
    pid: str | None  # the surviving MPI-PID, when known
    spid: str | None  # set when ready
    hold: str | None  # why it waits (a code above), None when ready
    detail: str = ""  # the reason in words: fields and case ids only
    review_id: str | None = None

    @property
    def ready(self) -> bool:
        return self.hold is None

    def explained(self, then: str) -> str:
        """The reason, what releases it, and `then` (the face's own command)."""
        return f"{self.detail}; it waits until {FIXED_WHEN[self.hold]}{then}"


def _fold(value: str | None) -> str | None:
    return unicodedata.normalize("NFC", value).casefold().strip() if value else None


def differences(claim: PatientClaim, record: PatientRecord) -> list[str]:
    """The demographic fields a document gives otherwise than the MPI (a missing value is no difference)."""
    differ = []
    family, given, birth_date, gender = claim.demographics
    if family and record.family and family != _fold(record.family):
        differ.append("family name")
    if given and record.given and given != _fold(record.given[0]):
        differ.append("given name")
    if birth_date and record.birth_date and birth_date != record.birth_date:
        differ.append("birth date")
    if gender and record.gender and gender != record.gender:
        differ.append("gender")
    return differ


class PatientReadiness:
    def __init__(self, *, patients: DatabasePatientIndex, access: AccessControl, open_cases: bool = True):
        self._patients = patients
        self._access = access
        # False for a dry run (the migration's --dry-run): a conflict is reported, no case is opened.
        self._open_cases = open_cases

    def check_many(self, claims: list[PatientClaim]) -> dict[PatientClaim, Readiness]:
        """Each claim's readiness, for a batch: the MPI asked once for all (`resolve_many`); review
        cases are read (and opened) only for the claims whose demographics differ."""
        distinct = list(dict.fromkeys(claims))
        resolved = self._patients.resolve_many([claim.identifiers for claim in distinct])
        cases: dict[tuple, str | None] = {}  # (pid, demographics) → open case id, None when accepted
        return {claim: self._check(claim, resolved[claim.identifiers], cases) for claim in distinct}

    def _check(self, claim: PatientClaim, resolved, cases: dict) -> Readiness:
        if resolved is None:
            systems = ", ".join(sorted({i.system for i in claim.identifiers}))
            return Readiness(None, None, UNKNOWN_PATIENT, f"no patient id it names ({systems}) is in the MPI")
        pid, record = resolved.pid, resolved.record
        if record is None or not record.spid:
            return Readiness(pid, None, NO_EPR, "the patient has no EPR (no EPR-SPID)")
        if not self._access.policies(pid):
            return Readiness(pid, None, EPR_NOT_OPENED, "the patient's EPR is not opened yet (no onboarding policies)")
        differ = differences(claim, record)
        if differ:
            key = (pid, claim.demographics)
            if key not in cases:
                cases[key] = self._case_for(pid, claim)
            if cases[key] is not None:
                verb = "differs" if len(differ) == 1 else "differ"
                case = f"identity review case {cases[key]}" if cases[key] else "a review case is opened when it is held"
                return Readiness(pid, None, IDENTITY_CONFLICT, f"its {' and '.join(differ)} {verb} from the MPI's "
                                 f"({case})", cases[key] or None)
        if resolved.under_review:
            # A case about a document's claim holds that claim's documents only (above), not the patient's.
            opened = [case for case in self._patients.reviews_of(self._patients.pids_for(pid), status="open")
                      if case.reason != DOCUMENT_DEMOGRAPHICS_DIFFER]
            if opened:
                return Readiness(pid, None, IDENTITY_REVIEW, "an identity review case names the patient "
                                 f"({', '.join(case.id for case in opened)})", opened[0].id)
        return Readiness(pid, record.spid, None)

    def _case_for(self, pid: str, claim: PatientClaim) -> str | None:
        """The open case for this patient and claimed identity (opened now if there is none; "" when
        none may be opened), or None when a resolved one accepted it."""
        matching = [case for case in self._patients.reviews_of((pid,), reason=DOCUMENT_DEMOGRAPHICS_DIFFER)
                    if _claimed(case.details["incoming"]) == claim.demographics]
        if any(case.status == "resolved" for case in matching):
            return None
        if matching:
            return matching[0].id
        if not self._open_cases:
            return ""
        incoming = PatientRecord(pid="", spid=None, family=claim.family, given=claim.given,
                                 birth_date=claim.birth_date, gender=claim.gender, identifiers=())
        return self._patients.open_review(DOCUMENT_DEMOGRAPHICS_DIFFER, pid, claim.identifiers[0], incoming)


def _claimed(incoming: dict) -> tuple:
    given = incoming.get("given") or []
    return _fold(incoming.get("family")), _fold(given[0] if given else None), incoming.get("birth_date"), \
        incoming.get("gender")
