"""CH:ATC conformance over HTTP: the trail the gateway serves has the shape of the official ATC
examples (read in place): same profile, type, subtype system, action, agent roles and identifiers,
patient entity, purposeOfEvent — and parses with the same R4B model."""

import json

import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from official_examples import require_examples
from conftest import FIXTURES, SPID
from gateway.samples import pdf_document, provide_bundle

CH_EPR = FIXTURES / "ch-epr-fhir"


@pytest.fixture(scope="module")
def official():
    require_examples(CH_EPR)
    return {p.stem.removeprefix("AuditEvent-"): json.loads(p.read_text()) for p in CH_EPR.glob("AuditEvent-atc-*.json")}


def shape(event: dict) -> dict:
    """The elements an integrator checks, without the values that differ by exchange."""
    user = next(a for a in event["agent"] if a.get("requestor"))
    patient = next(e for e in event["entity"] if e["role"]["code"] == "1")
    return {
        "profile": event["meta"]["profile"],
        "type": (event["type"]["system"], event["type"]["code"]),
        "subtype": [(c["system"], c["code"]) for c in event["subtype"]],
        "action": event["action"],
        "purpose system": event.get("purposeOfEvent", [{"coding": [{}]}])[0]["coding"][0].get("system"),
        "user role": user["role"][0]["coding"][0]["system"],
        "user identifier system": user.get("who", {}).get("identifier", {}).get("system"),
        "patient": (patient["what"]["identifier"]["system"], patient["type"]["code"]),
        "observer system": event["source"]["observer"]["identifier"]["system"],
    }


def test_the_served_trail_has_the_shape_of_the_official_atc_examples(gateway, official):
    gateway.register_patient()
    gateway.provide(provide_bundle(spid=SPID, documents=[{"title": "L", "content": pdf_document("L", ["x"])}]))
    gateway.find(headers=gateway.tokens.headers(gateway.tokens.hcp(purpose="EMER")))
    patient = gateway.tokens.headers(gateway.tokens.patient())
    gateway.client.get("/fhir/AuditEvent", params={"entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"},
                       headers=patient)

    trail = gateway.client.get("/fhir/AuditEvent", params={
        "entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"}, headers=patient).json()

    ours = {e["resource"]["subtype"][0]["code"]: e["resource"] for e in trail["entry"]}
    for event in ours.values():
        AuditEvent.model_validate(event)
    for example in official.values():
        AuditEvent.model_validate(example)
    search, search_example = shape(ours["ATC_DOC_SEARCH"]), shape(official["atc-doc-search"])
    assert search == search_example
    log_read, log_example = shape(ours["ATC_LOG_READ"]), shape(official["atc-log-read"])
    assert {k: v for k, v in log_read.items() if k != "purpose system"} == {
        k: v for k, v in log_example.items() if k != "purpose system"}
    assert shape(ours["ATC_POL_CREATE_AUT_PART_AL"])["subtype"] == shape(official["atc-pol-create-acc-right"])["subtype"]
