"""Bad input on purpose: each gets a precise OperationOutcome and leaves nothing stored."""

import copy

import orjson
import pytest

from functional.helpers import one_document_bundle, row_counts


def docref(bundle: dict) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")


def binary_entry(bundle: dict) -> dict:
    return next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Binary")


def without_binary(bundle):
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Binary"]


def drop(path: list[str]):
    def mutate(bundle):
        node = docref(bundle)
        for key in path[:-1]:
            node = node[key][0] if isinstance(node[key], list) else node[key]
        del node[path[-1]]
    return mutate


def set_value(path: list[str], value):
    def mutate(bundle):
        node = docref(bundle)
        for key in path[:-1]:
            node = node[key][0] if isinstance(node[key], list) else node[key]
        node[path[-1]] = value
    return mutate


def add_patient_entry(bundle):
    bundle["entry"].append({"fullUrl": "urn:uuid:0f0e0d0c-0000-4000-8000-000000000001",
                            "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}})


def point_url_nowhere(bundle):
    docref(bundle)["content"][0]["attachment"]["url"] = "urn:uuid:00000000-0000-4000-8000-00000000dead"


def invalid_base64(bundle):
    binary_entry(bundle)["resource"]["data"] = "JVBERi0x!!!=="


# (mutation, status, issue code, expression the issue must name, words the diagnostics must contain)
PROFILE_CASES = {
    "missing masterIdentifier": (drop(["masterIdentifier"]), 422, "business-rule", "masterIdentifier", "masterIdentifier"),
    "missing type": (drop(["type"]), 422, "business-rule", ".type", "type is required"),
    "missing securityLabel": (drop(["securityLabel"]), 422, "business-rule", "securityLabel", "confidentiality"),
    "missing attachment title": (drop(["content", "attachment", "title"]), 422, "business-rule",
                                 "attachment.title", "title is required"),
    "missing format": (drop(["content", "format"]), 422, "business-rule", "content[0].format", "formatCode"),
    "missing facility type": (drop(["context", "facilityType"]), 422, "business-rule", "context.facilityType",
                              "facilityType is required"),
    "docStatus present": (set_value(["docStatus"], "final"), 422, "business-rule", "docStatus", "absent"),
    "inline data": (set_value(["content", "attachment", "data"], "SGVsbG8="), 422, "business-rule",
                    "attachment.data", "Binary"),
    "subject not a SPID": (set_value(["subject"], {"identifier": {"system": "urn:oid:1.2.3", "value": "x"}}), 422,
                           "business-rule", "subject.identifier.system", "EPR-SPID"),
    "Binary missing": (without_binary, 422, "business-rule", "attachment.url", "does not point to a Binary"),
    "url pointing nowhere": (point_url_nowhere, 422, "business-rule", "attachment.url",
                             "does not point to a Binary"),
    "wrong hash": (set_value(["content", "attachment", "hash"], "2jmj7l5rSw0yVb/vlWAYkK/YBwk="), 422,
                   "business-rule", "attachment.hash", "SHA-1"),
    "wrong size": (set_value(["content", "attachment", "size"], 3), 422, "business-rule", "attachment.size",
                   "does not match"),
    "Patient entry": (add_patient_entry, 422, "business-rule", "Bundle.entry[3]", "no Patient"),
    "invalid base64": (invalid_base64, 400, "invalid", "data", "ase64"),
    "unknown element": (set_value(["bogus"], 1), 400, "invalid", "bogus", "Extra inputs"),
}


@pytest.mark.parametrize("case", PROFILE_CASES, ids=list(PROFILE_CASES))
def test_bad_bundle_is_refused_precisely_and_nothing_is_stored(gateway, case):
    gateway.register_patient()
    mutate, status, code, expression, words = PROFILE_CASES[case]
    bundle = copy.deepcopy(one_document_bundle())
    mutate(bundle)
    before = row_counts(gateway.runtime)

    response = gateway.provide(bundle)

    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    matching = [i for i in outcome["issue"] if any(expression in x for x in i.get("expression", []))]
    assert matching, outcome
    assert {i["code"] for i in outcome["issue"]} == {code}
    assert any(words in i["diagnostics"] for i in matching), outcome
    assert row_counts(gateway.runtime) == before


@pytest.mark.parametrize("body, words", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a FHIR resource"),
    (orjson.dumps({"resourceType": "Patient"}), "expected a Bundle"),
])
def test_malformed_body_is_a_400(gateway, body, words):
    before = row_counts(gateway.runtime)

    response = gateway.client.post("/fhir", content=body, headers=gateway.as_hcp())

    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "invalid"
    assert words in response.json()["issue"][0]["diagnostics"]
    assert row_counts(gateway.runtime) == before


def test_other_media_type_is_a_415(gateway):
    headers = {**gateway.as_hcp(), "Content-Type": "application/xml"}

    response = gateway.client.post("/fhir", content=b"<Bundle/>", headers=headers)

    assert response.status_code == 415
    assert response.json()["issue"][0]["expression"] == ["Content-Type"]


def test_oversized_body_is_a_413_and_nothing_is_stored(gateway):
    gateway.register_patient()
    limit = gateway.runtime.settings.max_body_bytes
    before = row_counts(gateway.runtime)

    response = gateway.client.post("/fhir", content=b" " * (limit + 1), headers=gateway.as_hcp())

    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"
    assert row_counts(gateway.runtime) == before


def test_oversized_body_without_content_length_is_cut_off(gateway):
    limit = gateway.runtime.settings.max_body_bytes

    def chunks():
        for _ in range(limit // (1 << 20) + 2):
            yield b" " * (1 << 20)

    response = gateway.client.post("/fhir", content=chunks(), headers=gateway.as_hcp())

    assert response.status_code == 413


def test_all_or_nothing_when_the_second_document_is_bad(gateway):
    gateway.register_patient()
    bundle = one_document_bundle()
    second = one_document_bundle(title="Second")
    second_docref = docref(second)
    second_docref["content"][0]["attachment"]["hash"] = "2jmj7l5rSw0yVb/vlWAYkK/YBwk="
    bundle["entry"][0]["resource"]["entry"].append(second["entry"][0]["resource"]["entry"][0])
    bundle["entry"].extend(second["entry"][1:])
    before = row_counts(gateway.runtime)

    response = gateway.provide(bundle)

    assert response.status_code == 422
    assert [i["expression"] for i in response.json()["issue"]] == [["Bundle.entry[3].resource.content[0].attachment.hash"]]
    assert row_counts(gateway.runtime) == before


def test_unknown_search_parameter_is_a_400(gateway):
    response = gateway.find(colour="blue")

    assert response.status_code == 400
    assert "colour" in response.json()["issue"][0]["diagnostics"]


def test_search_without_patient_identifier_is_a_400(gateway):
    response = gateway.client.get("/fhir/DocumentReference?status=current", headers=gateway.as_hcp())

    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["patient.identifier"]


@pytest.mark.parametrize("params, location", [
    ({"date": "yesterday"}, "date"),
    ({"_count": "-1"}, "_count"),  # _count=0 is the total only (FHIR search), not an error
    ({"status": "final"}, "status"),
])
def test_bad_search_values_are_a_400(gateway, params, location):
    response = gateway.find(**params)

    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == [location]


def test_xml_bomb_is_refused_without_expansion(gateway):
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            b'<Bundle xmlns="http://hl7.org/fhir">&lol2;</Bundle>')
    headers = {**gateway.as_hcp(), "Content-Type": "application/fhir+xml"}

    response = gateway.client.post("/fhir", content=bomb, headers=headers)

    assert response.status_code == 415
    assert response.json()["resourceType"] == "OperationOutcome"
