"""Identity rules of the MPI: AHVN13 check, how demographics are normalised before hashing, which
incoming identities conflict with the MPI (identity vigilance), and the PDQm search parameters.

Pure functions, no storage: the MPI (`store/patients.py`) applies them, and the unit tests pin them.
Demographics are only ever looked up through keyed hashes of these normalised values, so PDQm is an
exact match (case-insensitive, accents significant): a prefix or fuzzy search is impossible on hashes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from adapters.cara.errors import Conflict, InvalidInput
from adapters.cara.dates import InvalidDate, parse_full_date
from adapters.cara.identifier_syntax import AHVN13_SYSTEM, ascii_int, identifier_problem, is_spid
from adapters.cara.identifier_syntax import is_ahvn13 as _is_ahvn13
from adapters.cara.model import Identifier, PatientRecord

GENDERS = ("male", "female", "other", "unknown")

# Review reasons: an incoming identity the MPI will not merge silently (ITI-104 answers 409).
DEMOGRAPHICS_DIFFER = "demographics-differ"  # known local id, other birth date or name
SPID_DIFFERS = "spid-differs"  # known local id, its patient has another EPR-SPID
SPID_LINKED_ELSEWHERE = "spid-linked-elsewhere"  # the SPID belongs to another patient than the local id
AHVN13_LINKED_ELSEWHERE = "ahvn13-linked-elsewhere"  # the AHVN13 is already another patient's
IDENTIFIER_LINKED_ELSEWHERE = "identifier-linked-elsewhere"  # another id of the feed is another patient's
# A document (HL7 v2 PID, XDM sourcePatientInfo) names a known patient with other demographics.
DOCUMENT_DEMOGRAPHICS_DIFFER = "document-demographics-differ"
REVIEW_REASONS = {
    DEMOGRAPHICS_DIFFER: "the local identifier is known with another birth date or name",
    SPID_DIFFERS: "the local identifier belongs to a patient with another EPR-SPID",
    SPID_LINKED_ELSEWHERE: "the EPR-SPID is linked to another patient than the local identifier",
    AHVN13_LINKED_ELSEWHERE: "the AHVN13 is already linked to another patient",
    IDENTIFIER_LINKED_ELSEWHERE: "an identifier of this feed is already linked to another patient",
    DOCUMENT_DEMOGRAPHICS_DIFFER: "documents name this patient with another birth date, name or gender; they are "
                                  "held, and resolving the case files them under the patient",
}


class IdentityConflict(Conflict):
    """An identity the MPI refused to merge; the case waits in the review list under `review_id`."""

    def __init__(self, reason: str, *, review_id: str):
        super().__init__(f"identity conflict ({reason}): {REVIEW_REASONS[reason]}; nothing was merged, "
                         f"the case is in the identity review list as {review_id}", location="Patient.identifier")
        self.reason = reason
        self.review_id = review_id


def is_ahvn13(value: str) -> bool:
    """13 digits, starting 756 (Switzerland), EAN-13 check digit (weights 1,3,1,3… from the left)."""
    return _is_ahvn13(value)


def ahvn13_of(record: PatientRecord) -> str | None:
    return next((i.value for i in record.identifiers if i.system == AHVN13_SYSTEM), None)


def validate_incoming(record: PatientRecord) -> None:
    """What the feed must get right before the MPI looks at it (400, never a review case)."""
    if record.spid is not None and not is_spid(record.spid):
        raise InvalidInput("the EPR-SPID must be 18 ASCII digits", location="Patient.identifier")
    for identifier in record.identifiers:
        problem = identifier_problem(identifier.system, identifier.value)
        if problem:
            raise InvalidInput(problem, location="Patient.identifier")
    if record.gender is not None and record.gender not in GENDERS:
        raise InvalidInput(f"gender must be one of {', '.join(GENDERS)}", location="Patient.gender")
    if record.birth_date is not None and not _is_full_date(record.birth_date):
        raise InvalidInput("birthDate must be a full date (YYYY-MM-DD) that exists", location="Patient.birthDate")


def _is_full_date(value: str) -> bool:
    try:
        parse_full_date(value)
    except InvalidDate:
        return False
    return True


def canonical(record: PatientRecord) -> PatientRecord:
    """AHVN13 written without dots, so that 756.1234.5678.97 and 7561234567897 are the same identifier."""
    identifiers = tuple(Identifier(i.system, i.value.replace(".", "")) if i.system == AHVN13_SYSTEM else i
                        for i in record.identifiers)
    return replace(record, identifiers=identifiers)


def normalise(value: str) -> str:
    """Case-folded, inner whitespace collapsed; accents kept (Müller and Muller are two names)."""
    return " ".join(value.split()).casefold()


def index_values(record: PatientRecord) -> list[tuple[str, str]]:
    """(param, normalised value) pairs the MPI keeps as keyed hashes for PDQm and demographic matching."""
    values = []
    if record.family:
        values.append(("family", normalise(record.family)))
    values += [("given", normalise(g)) for g in dict.fromkeys(record.given) if g.strip()]
    if record.birth_date:
        values.append(("birthdate", record.birth_date))
    if record.gender:
        values.append(("gender", record.gender))
    ahvn13 = ahvn13_of(record)
    if ahvn13:
        values.append(("ahvn13", ahvn13))
    return values


def demographics_differ(current: PatientRecord, incoming: PatientRecord) -> bool:
    """A known local id fed with another birth date or name. Missing values are not a difference."""
    if incoming.birth_date and current.birth_date and incoming.birth_date != current.birth_date:
        return True
    if incoming.family and current.family and normalise(incoming.family) != normalise(current.family):
        return True
    return bool(incoming.given and current.given
                and tuple(map(normalise, incoming.given)) != tuple(map(normalise, current.given)))


def same_person_by_demographics(candidate: PatientRecord, incoming: PatientRecord) -> bool:
    """Exact match of family, given, birth date and gender, and no identifier saying otherwise (another
    SPID or AHVN13 means another person, whatever the demographics)."""
    if not (incoming.family and incoming.given and incoming.birth_date and incoming.gender):
        return False
    if candidate.spid and incoming.spid and candidate.spid != incoming.spid:
        return False
    theirs, ours = ahvn13_of(candidate), ahvn13_of(incoming)
    if theirs and ours and theirs != ours:
        return False
    return (normalise(candidate.family or "") == normalise(incoming.family)
            and tuple(map(normalise, candidate.given)) == tuple(map(normalise, incoming.given))
            and candidate.birth_date == incoming.birth_date and candidate.gender == incoming.gender)


# -- PDQm (ITI-78) parameters -----------------------------------------------------------------------

PDQ_DEMOGRAPHICS = ("family", "given", "birthdate", "gender")
PDQ_SUPPORTED = (*PDQ_DEMOGRAPHICS, "family:exact", "given:exact", "identifier", "_count")
PDQ_MAX_COUNT = 100


@dataclass(frozen=True)
class PatientSearch:
    """Each criterion: (param, alternatives) — a patient matches when every criterion has one alternative."""

    demographics: tuple[tuple[str, tuple[str, ...]], ...]
    identifiers: tuple[tuple[Identifier, ...], ...]
    count: int = PDQ_MAX_COUNT


def parse_pdq(params: list[tuple[str, str]]) -> PatientSearch:
    """Strict: an unknown parameter, a modifier or prefix we cannot honour on hashes, or no criterion is a 400."""
    unknown = sorted({n for n, _ in params if n not in PDQ_SUPPORTED})
    if unknown:
        raise InvalidInput(f"unknown or unsupported search parameter(s): {', '.join(unknown)} (exact match only: "
                           "demographics are kept as keyed hashes)", location="Patient?" + "&".join(unknown))
    demographics, identifiers, count = [], [], PDQ_MAX_COUNT
    for name, value in params:
        param = name.removesuffix(":exact")
        alternatives = [v for v in value.split(",") if v.strip()]
        if param == "_count":
            number = ascii_int(value)
            if number is None or not 0 <= number <= PDQ_MAX_COUNT:  # 0: the total only
                raise InvalidInput(f"_count must be an integer from 0 to {PDQ_MAX_COUNT}", location="_count")
            count = number
        elif not alternatives:
            raise InvalidInput(f"{name} needs a value", location=name)
        elif param == "identifier":
            identifiers.append(tuple(_identifier(v) for v in alternatives))
        elif param == "birthdate":
            dates = tuple(v.removeprefix("eq") for v in alternatives)
            if not all(_is_full_date(d) for d in dates):
                raise InvalidInput("birthdate must be a full date (YYYY-MM-DD, optionally eq); ranges are not "
                                   "supported on keyed hashes", location="birthdate")
            demographics.append(("birthdate", dates))
        elif param == "gender":
            if any(v not in GENDERS for v in alternatives):
                raise InvalidInput(f"gender must be one of {', '.join(GENDERS)}", location="gender")
            demographics.append(("gender", tuple(alternatives)))
        else:
            demographics.append((param, tuple(normalise(v) for v in alternatives)))
    if not demographics and not identifiers:
        raise InvalidInput("a PDQm query needs at least one of family, given, birthdate, gender, identifier",
                           location="Patient")
    return PatientSearch(tuple(demographics), tuple(identifiers), count)


def _identifier(value: str) -> Identifier:
    system, _, local = value.partition("|")
    if not system or not local:
        raise InvalidInput("identifier must be <system>|<value>", location="identifier")
    problem = identifier_problem(system, local)
    if problem:
        raise InvalidInput(problem, location="identifier")
    return Identifier(system, local.replace(".", "") if system == AHVN13_SYSTEM else local)


def parse_token(value: str | None, name: str) -> Identifier:
    """A `<system>|<value>` parameter (sourceIdentifier)."""
    system, _, local = (value or "").partition("|")
    if not system or not local:
        raise InvalidInput(f"{name} must be <system>|<value>", location=name)
    problem = identifier_problem(system, local)
    if problem:
        raise InvalidInput(problem, location=name)
    return Identifier(system, local)
