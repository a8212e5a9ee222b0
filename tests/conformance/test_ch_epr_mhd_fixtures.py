"""Conformance with the official CH EPR FHIR examples, read in place from the shared fixtures
(EPR_FIXTURES, default ../shared/fixtures). Their absence skips (fails under CI or EPR_FIXTURES): see official_examples."""

import base64
import json

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from official_examples import require_examples
from conftest import FIXTURES
from functional.helpers import row_counts

CH_EPR = FIXTURES / "ch-epr-fhir"


@pytest.fixture(scope="module")
def ch_epr():
    return require_examples(CH_EPR)


def test_official_provide_bundle_is_accepted_found_and_retrieved_byte_for_byte(gateway, ch_epr):
    raw = (ch_epr / "Bundle-BundleProvideDocument.json").read_bytes()
    example = json.loads(raw)
    spid = example["entry"][0]["resource"]["subject"]["identifier"]["value"]
    expected_bytes = base64.b64decode(example["entry"][2]["resource"]["data"])
    gateway.register_patient(spid=spid, local_id="8734")

    provided = gateway.client.post("/fhir", content=raw, headers=gateway.as_hcp())
    found = gateway.find(spid=spid, status="current")

    assert provided.status_code == 200, provided.text
    expected_response = json.loads((ch_epr / "Bundle-BundleProvideDocument-Response.json").read_text())
    answer = provided.json()
    assert answer["type"] == expected_response["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 3
    Bundle.model_validate(answer)
    assert found.json()["total"] == 1
    document = found.json()["entry"][0]["resource"]
    sent = example["entry"][1]["resource"]
    for element in ("masterIdentifier", "identifier", "status", "type", "category", "subject", "date", "description",
                    "securityLabel", "contained", "extension"):
        assert document[element] == sent[element], element
    assert document["content"][0]["format"] == sent["content"][0]["format"]
    assert document["context"] == sent["context"]
    retrieved = gateway.client.get(document["content"][0]["attachment"]["url"], headers=gateway.as_hcp())
    assert retrieved.status_code == 200
    assert retrieved.headers["content-type"] == "application/pdf"
    assert retrieved.content == expected_bytes


def test_find_answer_has_the_shape_of_the_official_find_result(gateway, ch_epr):
    raw = (ch_epr / "Bundle-BundleProvideDocument.json").read_bytes()
    spid = json.loads(raw)["entry"][0]["resource"]["subject"]["identifier"]["value"]
    gateway.register_patient(spid=spid, local_id="8734")
    gateway.client.post("/fhir", content=raw, headers=gateway.as_hcp())
    official = json.loads((ch_epr / "Bundle-Bundle-FindDocumentReferences.json").read_text())["entry"][0]["resource"]

    ours = gateway.find(spid=spid).json()["entry"][0]["resource"]

    assert set(official) - {"text"} <= set(ours)
    # meta as the example's, plus the versionId and lastUpdated the server assigns and a read gives
    # (FHIR versioning, issue 13).
    read = gateway.client.get(f"/fhir/DocumentReference/{ours['id']}", headers=gateway.as_hcp()).json()
    assert ours["meta"] == {**official["meta"], "versionId": "1", "lastUpdated": read["meta"]["lastUpdated"]}
    for element in ("masterIdentifier", "status", "type", "category", "subject", "securityLabel", "context"):
        assert ours[element] == official[element], element
    official_attachment = dict(official["content"][0]["attachment"], url=None)
    assert {k: v for k, v in ours["content"][0]["attachment"].items() if k in official_attachment and k != "url"} == {
        k: v for k, v in official_attachment.items() if k != "url"}


def test_unknown_patient_error_matches_the_official_operation_outcome(gateway, ch_epr):
    official = json.loads((ch_epr / "OperationOutcome-MhdOperationOutcomeErrorXDSPatientIDReconciliationError.json")
                          .read_text())
    raw = (ch_epr / "Bundle-BundleProvideDocument.json").read_bytes()

    response = gateway.client.post("/fhir", content=raw, headers=gateway.as_hcp())

    assert response.status_code == 422
    OperationOutcome.model_validate(response.json())
    ours, theirs = response.json()["issue"][0], official["issue"][0]
    assert (ours["severity"], ours["code"], ours["details"]) == (theirs["severity"], theirs["code"], theirs["details"])
    assert row_counts(gateway.runtime)["document_entry"] == 0
