"""Every transaction's AuditEvent, as the gateway stores it, has the shape of its CH profile's IG example
(ig/audit-event-shapes.json): the profile claimed in meta, `type`, the subtype codings (transaction and
restful interaction), the agent types, the entities' (type, role); and the main user carries what the CH
profiles require of it (one role, altId, name, one purposeOfUse). The patient's trail is checked elsewhere
(test_ch_epr_atc_fixtures) and is unchanged."""

import json

import orjson
import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from conftest import HCP_GLN, LOCAL_SYSTEM, SPID, grant_consent
from functional.helpers import document_ids, one_document_bundle
from profile_check import IG

SHAPES = json.loads((IG / "audit-event-shapes.json").read_text())["shapes"]
RESP = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """One gateway (SQLite) driven through every transaction once; the events it stored, by profile."""
    from conftest import running_gateway, sqlite_url

    tmp = tmp_path_factory.mktemp("audit-profiles")
    with running_gateway(tmp, sqlite_url(tmp)) as gateway:
        gateway.register_patient(grant_hcp="normal")  # ITI-104 create, PPQ-3 creates
        patient = gateway.tokens.headers(gateway.tokens.patient())
        hcp = gateway.as_hcp()
        [entry_id] = document_ids(gateway.provide(one_document_bundle()).json())
        assert gateway.find().status_code == 200  # ITI-67
        assert gateway.client.get(f"/fhir/Binary/{entry_id}", headers=hcp).status_code == 200  # ITI-68
        assert gateway.client.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{LOCAL_SYSTEM}|L-1"},
                                  headers=hcp).status_code == 200  # ITI-83
        consent = grant_consent(spid=SPID, gln="7601000000019", level="normal")
        created = gateway.client.post("/fhir/Consent", content=orjson.dumps(consent), headers=patient)
        assert gateway.client.get("/fhir/Consent", params={"patient:identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"},
                                  headers=patient).status_code == 200  # PPQ-5
        assert gateway.client.delete(f"/fhir/Consent/{created.json()['id']}", headers=patient).status_code == 204
        reference = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=hcp).json()
        reference["description"] = "corrected"
        assert gateway.client.put(f"/fhir/DocumentReference/{entry_id}", content=orjson.dumps(reference),
                                  headers=hcp).status_code == 200  # CH:MHD-1
        events = gateway.services.auditor.ledger.all_records()
    by_profile: dict[str, list[dict]] = {}
    for event in events:
        for profile in event.get("meta", {}).get("profile", []):
            by_profile.setdefault(profile, []).append(event)
    return by_profile


def codings(values) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in values}


@pytest.mark.parametrize("shape", SHAPES, ids=[s["profile"].rsplit("/", 1)[1] for s in SHAPES])
def test_each_transactions_record_has_the_shape_of_its_profiles_example(emitted, shape):
    events = emitted.get(shape["profile"], [])
    assert events, f"no stored event claims {shape['profile']}"
    for event in events:
        AuditEvent.model_validate(event)
        assert {k: event["type"][k] for k in ("system", "code")} == shape["type"]
        assert codings(event["subtype"]) >= {tuple(c) for c in shape["subtype"]}
        assert {tuple(c) for c in shape["agentTypes"]} <= {
            (c["system"], c["code"]) for a in event["agent"] if "type" in a for c in a["type"]["coding"]}
        assert {tuple(e) for e in shape["entities"]} <= {(e["type"]["code"], e["role"]["code"]) for e in event["entity"]}
        [main_user] = [a for a in event["agent"] if "type" in a and a["type"]["coding"][0] == {
            "system": RESP, "code": "RESP", "display": "responsible party"}]
        assert (len(main_user["role"]), bool(main_user["altId"]), bool(main_user["name"]),
                len(main_user["purposeOfUse"])) == (1, True, True, 1)
    # Over HTTP (a traceparent), the server agent carries the gateway's URL (network type 5, URI);
    # onboarding, called in-process, has no network address to give.
    over_http = [e for e in events if any(x["role"]["code"] == "26" for x in e["entity"])]
    assert over_http
    for event in over_http:
        assert [a["network"]["address"] for a in event["agent"] if a.get("network", {}).get("type") == "5"] == [
            "https://testserver"]


def test_a_ppq4_bundle_is_recorded_as_one_ppq3_event_per_change(tmp_path):
    from conftest import running_gateway, sqlite_url

    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        gateway.register_patient(grant_hcp=None)
        patient = gateway.tokens.headers(gateway.tokens.patient())
        consents = [grant_consent(spid=SPID, gln=gln, level="normal") for gln in (HCP_GLN, "7601000000019")]
        bundle = {"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"resource": c, "request": {"method": "POST", "url": "Consent"}} for c in consents]}
        before = len(gateway.services.auditor.ledger.all_records())
        assert gateway.provide(bundle, headers=patient).status_code == 200
        recorded = gateway.services.auditor.ledger.all_records()[before:]
    assert [(next(c["code"] for c in e["subtype"] if c["system"] == "urn:e-health-suisse:event-type-code"),
             e["meta"]["profile"][0].rsplit("/", 1)[1]) for e in recorded] == [
        ("PPQ-3", "ChAuditEventPpq3Create"), ("PPQ-3", "ChAuditEventPpq3Create")]
