"""CH PDQm when too many patients match (issue 27 item 17): ITI-78 and ITI-119 show no patient beyond
five, but a searchset of total 0 whose one entry is the OperationOutcome asking for more attributes
(ChPdqmResponseMoreAttributesRequested, `search.mode` outcome, as the CH example
PDQm-QueryResponseTooManyResults); five or fewer are shown as before. Each test on SQLite and PostgreSQL."""

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from conftest import LOCAL_SYSTEM
from gateway.samples import patient_feed

PROFILE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-pdqm-moreattributesrequested"
GENDER_REQUESTED = {"system": "urn:oid:1.3.6.1.4.1.19376.1.2.27.1", "code": "LivingSubjectAdministrativeGenderRequested",
                    "display": "LivingSubjectAdministrativeGenderRequested"}
SPIDS = [f"7613376104{n:07d}0" for n in range(1, 8)]


def feed_namesakes(gateway, count: int, *, gender_of=lambda n: "female") -> None:
    """`count` patients called Anna Muster born on 1980-05-17 (only their local id and SPID differ)."""
    for n in range(count):
        body = patient_feed(spid=SPIDS[n], local_system=LOCAL_SYSTEM, local_id=f"N-{n}", family="Muster", given="Anna",
                            birth_date="1980-05-17", gender=gender_of(n))
        answer = gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|N-{n}", content=orjson.dumps(body),
                                    headers=gateway.as_hcp())
        assert answer.status_code == 201, answer.text


def pdq(gateway, **params):
    answer = gateway.client.get("/fhir/Patient", params=params, headers=gateway.as_hcp())
    assert answer.status_code == 200, answer.text
    return answer.json()


def match(gateway, patient: dict):
    body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient",
                                                                                        **patient}}]}
    answer = gateway.client.post("/fhir/Patient/$match", content=orjson.dumps(body), headers=gateway.as_hcp())
    assert answer.status_code == 200, answer.text
    return answer.json()


def too_many(bundle: dict) -> list[tuple[str, str, tuple, tuple]]:
    """The whole answer must be the CH shape; returns each issue as (severity, code, expression, details)."""
    Bundle.model_validate(bundle)
    assert (bundle["type"], bundle["total"], len(bundle["entry"])) == ("searchset", 0, 1)
    [entry] = bundle["entry"]
    assert entry["search"] == {"mode": "outcome"} and entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"
    outcome = entry["resource"]
    OperationOutcome.model_validate(outcome)
    assert outcome["meta"]["profile"] == [PROFILE]
    return [(i["severity"], i["code"], tuple(i["expression"]), tuple((i.get("details") or {}).get("coding", [])))
            for i in outcome["issue"]]


def shown_spids(bundle: dict) -> list[str]:
    Bundle.model_validate(bundle)
    return sorted(next(i["value"] for i in e["resource"]["identifier"] if i["system"].endswith("127.3.10.3"))
                  for e in bundle.get("entry", []))


def test_iti78_shows_none_of_six_namesakes_and_asks_for_what_the_query_lacks(gateway):
    feed_namesakes(gateway, 6)

    assert too_many(pdq(gateway, family="Muster", birthdate="1980-05-17")) == [
        ("warning", "incomplete", ("Patient.name.given",), ()),
        ("warning", "incomplete", ("Patient.gender",), (GENDER_REQUESTED,))]
    assert too_many(pdq(gateway, family="Muster", given="Anna", birthdate="1980-05-17", gender="female")) == [
        ("warning", "incomplete", ("Patient.identifier",), ())]  # every demographic given: an identifier narrows
    total_only = pdq(gateway, family="Muster", _count="0")  # the total alone: no count of the patients either
    assert (total_only["total"], "entry" in total_only) == (0, False)


def test_iti78_shows_five_and_what_narrows_the_query(gateway):
    feed_namesakes(gateway, 6, gender_of=lambda n: "male" if n == 5 else "female")

    assert shown_spids(pdq(gateway, family="Muster", gender="female")) == sorted(SPIDS[:5])
    assert shown_spids(pdq(gateway, identifier=f"{LOCAL_SYSTEM}|N-5")) == [SPIDS[5]]


def test_the_audit_of_a_too_many_answer_names_no_patient(gateway):
    feed_namesakes(gateway, 6)
    before = len(gateway.services.auditor.ledger.all_records())

    pdq(gateway, family="Muster")
    match(gateway, {"name": [{"family": "Muster"}], "birthDate": "1980-05-17"})

    records = gateway.services.auditor.ledger.all_records()[before:]
    assert [r["subtype"][0]["code"] for r in records] == ["ITI-78", "ITI-119"]
    assert [e for r in records for e in r.get("entity", []) if e["role"]["code"] == "1"] == []  # no patient entity


def test_iti119_shows_none_of_six_possible_matches(gateway):
    feed_namesakes(gateway, 6)

    assert too_many(match(gateway, {"name": [{"family": "Muster"}], "birthDate": "1980-05-17"})) == [
        ("warning", "incomplete", ("Patient.name.given",), ()),
        ("warning", "incomplete", ("Patient.gender",), (GENDER_REQUESTED,))]


def test_iti119_certain_matches_are_not_drowned_by_weaker_ones(gateway):
    feed_namesakes(gateway, 6)
    by_spid = {"identifier": [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.3", "value": SPIDS[2]}],
               "name": [{"family": "Muster"}], "birthDate": "1980-05-17"}

    bundle = match(gateway, by_spid)  # six possible persons, one of them certain: that one alone is shown
    assert [(e["search"]["score"], e["search"]["extension"][0]["valueCode"]) for e in bundle["entry"]] == [
        (1.0, "certain")]
    assert shown_spids(bundle) == [SPIDS[2]]


def test_iti119_six_certain_matches_are_still_too_many(gateway):
    feed_namesakes(gateway, 6)  # all four demographics equal: each one a certain match

    assert too_many(match(gateway, {"name": [{"family": "Muster", "given": ["Anna"]}], "birthDate": "1980-05-17",
                                    "gender": "female"})) == [("warning", "incomplete", ("Patient.identifier",), ())]


@pytest.mark.parametrize("count", [1, 5])
def test_up_to_five_matches_are_shown_as_before(gateway, count):
    feed_namesakes(gateway, count)

    assert shown_spids(pdq(gateway, family="Muster")) == sorted(SPIDS[:count])
    assert shown_spids(match(gateway, {"name": [{"family": "Muster"}], "birthDate": "1980-05-17"})) == sorted(
        SPIDS[:count])
