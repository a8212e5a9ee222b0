"""CH:PPQm conformance: the seven official Consent examples, read in place, are accepted by PPQ-3
(PADM bootstrapping) and returned by PPQ-5 equal in meaning."""

import json

import pytest
from fhir.resources.R4B.bundle import Bundle

from official_examples import require_examples
from conftest import FIXTURES

CH_EPR = FIXTURES / "ch-epr-fhir"
TEMPLATES = (201, 202, 203, 301, 302, 303, 304)
MEANING = ("identifier", "status", "scope", "category", "patient", "policyRule", "provision")


@pytest.fixture(scope="module")
def examples():
    require_examples(CH_EPR)
    return {t: json.loads((CH_EPR / f"Consent-PpqmConsentTemplate{t}Example.json").read_text()) for t in TEMPLATES}


def test_the_seven_official_consents_go_in_by_ppq3_and_come_back_by_ppq5(gateway, examples):
    spid = examples[201]["patient"]["identifier"]["value"]
    gateway.register_patient(spid=spid, grant_hcp=None)
    admin = gateway.tokens.headers(gateway.tokens.mint(role="PADM", user_id="padm-1", name="Policy admin"))
    # the examples replace what onboarding created: remove those first
    existing = gateway.client.get("/fhir/Consent", params={"patient:identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{spid}"},
                                  headers=admin).json()
    for entry in existing["entry"]:
        assert gateway.client.delete(f"/fhir/Consent/{entry['resource']['id']}", headers=admin).status_code == 204

    statuses = [gateway.client.post("/fhir/Consent", content=json.dumps(examples[t]), headers=admin).status_code
                for t in TEMPLATES]
    retrieved = gateway.client.get("/fhir/Consent", params={"patient:identifier":
                                   f"urn:oid:2.16.756.5.30.1.127.3.10.3|{spid}"}, headers=admin)

    assert statuses == [201] * 7
    assert retrieved.status_code == 200
    Bundle.model_validate(retrieved.json())
    by_policy_set = {e["resource"]["identifier"][0]["value"]: e["resource"] for e in retrieved.json()["entry"]}
    assert len(by_policy_set) == 7
    for template, example in examples.items():
        ours = by_policy_set[example["identifier"][0]["value"]]
        assert {k: ours[k] for k in MEANING} == {k: example[k] for k in MEANING}, template
        assert ours["meta"]["profile"] == example["meta"]["profile"]


def test_ppq5_by_policy_set_identifier(gateway, examples):
    spid = examples[301]["patient"]["identifier"]["value"]
    gateway.register_patient(spid=spid, grant_hcp=None)
    patient = gateway.tokens.headers(gateway.tokens.patient(spid))
    assert gateway.client.post("/fhir/Consent", content=json.dumps(examples[301]), headers=patient).status_code == 201

    response = gateway.client.get("/fhir/Consent", params={"identifier": examples[301]["identifier"][0]["value"]},
                                  headers=patient)

    assert response.status_code == 200
    assert [e["resource"]["policyRule"] for e in response.json()["entry"]] == [examples[301]["policyRule"]]
