"""CH PIXm / PDQm conformance: the official examples, read in place. The ITI-83 input example asked of
an MPI holding that patient gives the output example's identifiers (the MPI-PID being ours); the PDQm
QueryResponse's patient, fed by ITI-104, comes back from ITI-78 with the same identifiers and demographics."""

import json

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters

from official_examples import require_examples
from conftest import FIXTURES, running_gateway, sqlite_url

CH_EPR = FIXTURES / "ch-epr-fhir"
EXAMPLES = ("Parameters-ParametersPIXmInput.json", "Parameters-ParametersPIXmOutput.json",
            "Bundle-PDQm-QueryResponse.json")
COMMUNITY_OID = "2.999.5.6.7"  # the MPI-PID system of the examples
SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"


@pytest.fixture(scope="module")
def examples():
    require_examples(CH_EPR, EXAMPLES)
    return [json.loads((CH_EPR / name).read_text()) for name in EXAMPLES]


@pytest.fixture
def gateway(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), community_oid=COMMUNITY_OID) as running:
        yield running


def feed_example_patient(gateway, patient: dict, source: str) -> str:
    body = {k: patient[k] for k in ("resourceType", "identifier", "name", "gender", "birthDate")}
    body["identifier"] = [{"system": i["system"], "value": i["value"]} for i in patient["identifier"]
                          if i["system"] != f"urn:oid:{COMMUNITY_OID}"] + [
        {"system": source.split("|")[0], "value": source.split("|")[1]}]
    response = gateway.client.put(f"/fhir/Patient?identifier={source}", content=orjson.dumps(body),
                                  headers=gateway.as_hcp())
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_the_pixm_input_example_gives_the_output_example(gateway, examples):
    pix_in, pix_out, pdqm = examples
    params = [(p["name"], p["valueString"]) for p in pix_in["parameter"]]
    source = dict(params)["sourceIdentifier"]
    # The output example writes placeholders ("value of EPR-SPID"): the patient is the PDQm example's.
    patient = json.loads(json.dumps(pdqm["entry"][0]["resource"]))
    patient["identifier"] = [i for i in patient["identifier"] if i["system"] == SPID_SYSTEM]
    spid = patient["identifier"][0]["value"]
    pid = feed_example_patient(gateway, patient, source)

    response = gateway.client.get("/fhir/Patient/$ihe-pix", params=params, headers=gateway.as_hcp())

    assert response.status_code == 200, response.text
    Parameters.model_validate(response.json())
    ours = {f"urn:oid:{COMMUNITY_OID}": pid, SPID_SYSTEM: spid}
    expected = [p["valueIdentifier"] | {"value": ours[p["valueIdentifier"]["system"]]} for p in pix_out["parameter"]]
    answered = response.json()["parameter"]
    assert [p["valueIdentifier"] for p in answered if p["name"] == "targetIdentifier"] == expected
    assert [p for p in answered if p["name"] == "targetId"] == [
        {"name": "targetId", "valueReference": {"reference": f"Patient/{pid}"}}]


def test_the_pdqm_example_patient_comes_back_from_iti78(gateway, examples):
    example = examples[2]["entry"][0]["resource"]
    pid = feed_example_patient(gateway, example, "urn:oid:2.999.1.2.3.4|8734")
    name = example["name"][0]

    response = gateway.client.get("/fhir/Patient", headers=gateway.as_hcp(), params={
        "family": name["family"], "given": name["given"][0], "birthdate": example["birthDate"]})

    assert response.status_code == 200, response.text
    Bundle.model_validate(response.json())
    bundle = response.json()
    assert (bundle["type"], bundle["total"], bundle["entry"][0]["search"]["mode"]) == ("searchset", 1, "match")
    patient = bundle["entry"][0]["resource"]
    expected_ids = [i | ({"value": pid} if i["system"] == f"urn:oid:{COMMUNITY_OID}" else {})
                    for i in example["identifier"]]
    assert patient["identifier"] == expected_ids
    assert {k: patient[k] for k in ("name", "gender", "birthDate")} == {
        k: example[k] for k in ("name", "gender", "birthDate")}
    assert patient["meta"]["profile"] == example["meta"]["profile"]
