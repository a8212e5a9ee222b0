"""ITI-119 Patient/$match over HTTP: scores on the MPI's normalised demographics, the match-grade
extension, onlyCertainMatches, count, identifiers, who may ask, bad input, and the audit (names only)."""

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from conftest import LOCAL_SYSTEM, OTHER_SPID, SPID
from gateway.samples import patient_feed

GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
THIRD_SPID = "761337610488888882"


@pytest.fixture
def three_patients(gateway) -> dict[str, str]:
    gateway.register_patient()  # Anna Muster, 1980-05-17, female
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul")
    namesake = patient_feed(spid=THIRD_SPID, local_system=LOCAL_SYSTEM, local_id="L-3", family="MUSTER", given="anna",
                            birth_date="1990-01-01", gender="female")
    response = gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-3", content=orjson.dumps(namesake),
                                  headers=gateway.as_hcp())
    assert response.status_code == 201, response.text
    return {"anna": SPID, "paul": OTHER_SPID, "namesake": THIRD_SPID}


def match(gateway, patient: dict, headers=None, **options):
    parameters = [{"name": "resource", "resource": {"resourceType": "Patient", **patient}}]
    parameters += [{"name": "onlyCertainMatches", "valueBoolean": options["only_certain"]}] if "only_certain" in options else []
    parameters += [{"name": "count", "valueInteger": options["count"]}] if "count" in options else []
    return gateway.client.post("/fhir/Patient/$match", content=orjson.dumps({"resourceType": "Parameters",
                                                                            "parameter": parameters}),
                               headers=headers or gateway.as_hcp())


def results(response) -> list[tuple[str, float, str]]:
    assert response.status_code == 200, response.text
    bundle = response.json()
    Bundle.model_validate(bundle)
    return [(next(i["value"] for i in e["resource"]["identifier"] if i["system"].endswith("127.3.10.3")),
             e["search"]["score"], next(x["valueCode"] for x in e["search"]["extension"] if x["url"] == GRADE))
            for e in bundle.get("entry", [])]


ANNA = {"name": [{"family": "Muster", "given": ["Anna"]}], "birthDate": "1980-05-17", "gender": "female"}


def test_the_best_matches_come_first_with_their_score_and_grade(gateway, three_patients):
    assert results(match(gateway, ANNA)) == [(SPID, 1.0, "certain"), (THIRD_SPID, 0.7, "probable")]


def test_only_certain_matches_and_count_bound_the_answer(gateway, three_patients):
    assert results(match(gateway, ANNA, only_certain=True)) == [(SPID, 1.0, "certain")]
    assert results(match(gateway, ANNA, count=1)) == [(SPID, 1.0, "certain")]
    assert results(match(gateway, {"name": [{"family": "Nobody"}]})) == []


def test_an_identifier_the_mpi_knows_is_a_certain_match(gateway, three_patients):
    by_local_id = {"identifier": [{"system": LOCAL_SYSTEM, "value": "L-2"}], "name": [{"family": "Someone else"}]}
    assert results(match(gateway, by_local_id)) == [(OTHER_SPID, 1.0, "certain")]


@pytest.mark.parametrize("body, status", [
    ({"resourceType": "Parameters", "parameter": []}, 400),
    ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient"}}]}, 400),
    ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient",
                                                                                  "gender": "female"}},
                                                   {"name": "count", "valueInteger": 0}]}, 400),
    ({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient",
                                                                                  "gender": "female"}},
                                                   {"name": "fuzzy", "valueBoolean": True}]}, 400),
    ({"resourceType": "Patient"}, 400),
], ids=["no resource", "nothing to match", "count 0", "unknown parameter", "not Parameters"])
def test_bad_input_is_an_operation_outcome(gateway, three_patients, body, status):
    response = gateway.client.post("/fhir/Patient/$match", content=orjson.dumps(body), headers=gateway.as_hcp())
    assert (response.status_code, response.json()["resourceType"]) == (status, "OperationOutcome")


def test_a_patient_may_not_match_and_the_audit_names_criteria_never_values(gateway, three_patients):
    refused = match(gateway, ANNA, headers=gateway.tokens.headers(gateway.tokens.patient()))
    assert refused.status_code == 403
    match(gateway, ANNA)
    events = [e for e in gateway.services.auditor.ledger.all_records()
              if any(c["code"] == "ITI-119" for c in e["subtype"])]
    assert [(e["outcome"], next((x["what"]["identifier"]["value"] for x in e.get("entity", [])
                                 if x["role"]["code"] == "1"), None)) for e in events] == [
        ("4", None), ("0", SPID), ("0", THIRD_SPID)]
    text = orjson.dumps([e for e in events if e["outcome"] == "0"]).decode()  # (the refused one names the caller)
    assert "Muster" not in text and "muster" not in text and "1980-05-17" not in text
