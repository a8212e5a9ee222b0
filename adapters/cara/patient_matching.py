"""ITI-119 Patient Demographics Match: the submitted Patient's demographics against the MPI's.

Scoring works on the MPI's normalised demographics, which it keeps only as keyed hashes
(`patient_index`): a candidate is a patient sharing at least one of the submitted values, and its score
is the weight of the values it shares. An identifier the MPI resolves (a local id, the SPID, the
AHVN13) names the patient itself: certain. The grades are FHIR's match-grade codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.cara.errors import InvalidInput
from adapters.cara.identifier_syntax import identifier_problem
from adapters.cara.identity import AHVN13_SYSTEM, normalise
from adapters.cara.model import Identifier

MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
# Birth date and family name weigh most: two people sharing both and the given name are rare; gender
# alone tells little. All four together are a certain match (the MPI's own linking rule, ITI-104).
WEIGHTS = {"family": 0.3, "birthdate": 0.3, "given": 0.3, "gender": 0.1}
# Possible needs two of family, given, birth date; a shared birth date and gender alone (0.4) is no match.
PROBABLE, POSSIBLE = 0.7, 0.5
MAX_COUNT = 100


@dataclass(frozen=True)
class MatchRequest:
    demographics: tuple[tuple[str, str], ...]  # (param, normalised value), as the MPI indexes them
    identifiers: tuple[Identifier, ...]
    only_certain: bool
    count: int

    @property
    def criteria(self) -> tuple[str, ...]:
        """The names of what was submitted (what the audit record may say: no values)."""
        return tuple(dict.fromkeys([p for p, _ in self.demographics] + ["identifier"] * bool(self.identifiers)))


def parse_match(parameters: dict[str, Any]) -> MatchRequest:
    """The ITI-119 input Parameters (resource, onlyCertainMatches, count), or InvalidInput."""
    params = parameters.get("parameter") or []
    resources = [p.get("resource") for p in params if p.get("name") == "resource"]
    if len(resources) != 1 or (resources[0] or {}).get("resourceType") != "Patient":
        raise InvalidInput("ITI-119 takes exactly one parameter 'resource' holding a Patient",
                           location="Parameters.parameter")
    unknown = sorted({p.get("name") for p in params} - {"resource", "onlyCertainMatches", "count"})
    if unknown:
        raise InvalidInput(f"unknown $match parameter(s): {', '.join(map(str, unknown))}",
                           location="Parameters.parameter")
    only_certain = next((p.get("valueBoolean") for p in params if p.get("name") == "onlyCertainMatches"), False)
    count = next((p.get("valueInteger") for p in params if p.get("name") == "count"), 10)
    if not isinstance(only_certain, bool):
        raise InvalidInput("onlyCertainMatches is a valueBoolean", location="Parameters.parameter")
    if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidInput(f"count is a valueInteger from 1 to {MAX_COUNT}", location="Parameters.parameter")
    patient = resources[0]
    demographics: list[tuple[str, str]] = []
    for name in patient.get("name", [])[:1]:  # the first name given: the one to match
        if name.get("family"):
            demographics.append(("family", normalise(name["family"])))
        demographics += [("given", normalise(g)) for g in name.get("given", []) if g.strip()]
    if patient.get("birthDate"):
        demographics.append(("birthdate", patient["birthDate"]))
    if patient.get("gender"):
        demographics.append(("gender", patient["gender"]))
    identifiers = tuple(Identifier(i["system"], i["value"].replace(".", "") if i["system"] == AHVN13_SYSTEM
                                   else i["value"])
                        for i in patient.get("identifier", []) if i.get("system") and i.get("value"))
    for n, identifier in enumerate(identifiers):  # the syntax ITI-104 and PDQm hold identifiers to
        problem = identifier_problem(identifier.system, identifier.value)
        if problem:
            raise InvalidInput(problem, location=f"Parameters.parameter.resource.identifier[{n}]")
    if not demographics and not identifiers:
        raise InvalidInput("the Patient gives nothing to match: name, birthDate, gender or identifier",
                           location="Parameters.parameter.resource")
    return MatchRequest(tuple(dict.fromkeys(demographics)), identifiers, only_certain, count)


def score(request: MatchRequest, shared: set[str], identified: bool) -> float:
    """1 for an identified patient; else the weight of the submitted demographics the candidate shares,
    over the weight of those submitted (what was not submitted cannot count against it)."""
    if identified:
        return 1.0
    submitted = {p for p, _ in request.demographics}
    possible = sum(WEIGHTS[p] for p in submitted)
    return round(sum(WEIGHTS[p] for p in shared & submitted) / possible, 2) if possible else 0.0


def grade(value: float, *, complete: bool) -> str | None:
    """FHIR match-grade: certain needs every one of family, given, birth date and gender (or an
    identifier); None is certainly-not (the candidate is left out)."""
    if value >= 1.0 and complete:
        return "certain"
    if value >= PROBABLE:
        return "probable"
    if value >= POSSIBLE:
        return "possible"
    return None
