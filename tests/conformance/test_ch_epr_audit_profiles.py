"""Every transaction's AuditEvent, as the gateway stores it, conforms to the structure of the CH profile it
claims (the vendored differential merged with its CH parents: elements, fixed and pattern codes, cardinalities,
slices; profile_check.py says what it cannot check), and so does every entry of the patient's trail (ITI-81)
against its CH:ATC profile. Beside it, each record has the shape of its profile's IG example
(ig/audit-event-shapes.json) for what only the IHE parents require: `type`, the subtype codings (transaction
and restful interaction), the agent types, the entities' (type, role); the patient's trail is checked
against the official examples elsewhere (test_ch_epr_atc_fixtures) and is unchanged."""

import copy
import json
import re

import orjson
import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from audit.events import atc_view
from conftest import HCP_GLN, LOCAL_SYSTEM, SPID, grant_consent
from functional.helpers import document_ids, one_document_bundle
from gateway.samples import patient_feed, pdf_document, provide_bundle
from profile_check import CH_PROFILES, IG, check, load_profile, unchecked_slices

SHAPES = json.loads((IG / "audit-event-shapes.json").read_text())["shapes"]  # ITI-66's from IHE MHD (no CH one)
RESP = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


@pytest.fixture(scope="module")
def every_record(tmp_path_factory):
    """One gateway (SQLite) driven through every audited exchange the CH profiles cover, the delegated
    (TCU) and rarer interactions too (ITI-104 update, PPQ-3 update, ITI-119); the stored events and the
    patient's trail as ITI-81 serves it, by the profile each claims."""
    from conftest import running_gateway, sqlite_url

    tmp = tmp_path_factory.mktemp("audit-structure")
    with running_gateway(tmp, sqlite_url(tmp)) as gateway:
        gateway.register_patient(grant_hcp="normal")  # ITI-104 create, PPQ-3 creates
        feed = patient_feed(spid=SPID, local_system=LOCAL_SYSTEM, local_id="L-1", family="Muster", given="Anna",
                            birth_date="1980-05-17", gender="female")
        assert gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-1", content=orjson.dumps(feed),
                                  headers=gateway.as_hcp()).status_code == 200  # ITI-104 update
        patient = gateway.tokens.headers(gateway.tokens.patient())
        hcp = gateway.as_hcp()
        [entry_id] = document_ids(gateway.provide(one_document_bundle()).json())  # ITI-65
        by_tcu = gateway.provide(provide_bundle(spid=SPID, author_role="TCU", documents=[
            {"title": "L", "content": pdf_document("L", ["x"])}]),
                                 headers=gateway.tokens.headers(gateway.tokens.tcu()))
        assert by_tcu.status_code == 200, by_tcu.text  # ITI-65 by a technical user for the HCP (delegatedUser)
        assert gateway.find().status_code == 200  # ITI-67
        assert gateway.client.get("/fhir/List", params={"patient.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}",
                                                        "code": "submissionset"}, headers=hcp).status_code == 200  # ITI-66
        assert gateway.client.get(f"/fhir/Binary/{entry_id}", headers=hcp).status_code == 200  # ITI-68
        assert gateway.client.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{LOCAL_SYSTEM}|L-1"},
                                  headers=hcp).status_code == 200  # ITI-83
        match = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {
            "resourceType": "Patient", "name": [{"family": "Muster", "given": ["Anna"]}], "birthDate": "1980-05-17"}}]}
        assert gateway.client.post("/fhir/Patient/$match", content=orjson.dumps(match),
                                   headers=hcp).status_code == 200  # ITI-119
        consent = grant_consent(spid=SPID, gln="7601000000019", level="normal")
        created = gateway.client.post("/fhir/Consent", content=orjson.dumps(consent), headers=patient)
        consent["policyRule"]["coding"][0]["code"] = "urn:e-health-suisse:2015:policies:access-level:restricted"
        assert gateway.client.put(f"/fhir/Consent/{created.json()['id']}", content=orjson.dumps(consent),
                                  headers=patient).status_code == 200  # PPQ-3 update
        assert gateway.client.get("/fhir/Consent", params={
            "patient:identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"},
                                  headers=patient).status_code == 200  # PPQ-5
        assert gateway.client.delete(f"/fhir/Consent/{created.json()['id']}", headers=patient).status_code == 204
        reference = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=hcp).json()
        reference["description"] = "corrected"
        assert gateway.client.put(f"/fhir/DocumentReference/{entry_id}", content=orjson.dumps(reference),
                                  headers=hcp).status_code == 200  # CH:MHD-1
        _more_participants(gateway, patient, entry_id)
        trail_query = {"entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"}
        assert gateway.client.get("/fhir/AuditEvent", params=trail_query, headers=patient).status_code == 200
        page = gateway.client.get("/fhir/AuditEvent", params=trail_query, headers=patient).json()  # ITI-81
        served = [entry["resource"] for entry in page["entry"]]
        while next_page := next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None):
            page = gateway.client.get(next_page.removeprefix("https://testserver"), headers=patient).json()
            served += [entry["resource"] for entry in page["entry"]]
        stored = gateway.services.auditor.ledger.all_records()
    by_profile: dict[str, list[dict]] = {}
    for event in stored + served:
        for profile in event.get("meta", {}).get("profile", []):
            by_profile.setdefault(profile, []).append(event)
    return by_profile


def _more_participants(gateway, patient: dict, entry_id: str) -> None:
    """The other participants and policy shapes: group (302) and representative (303) grants, a PPQ-4 Bundle,
    PPQ-3 at the IG's conditional URLs, the representative, an assistant, an emergency search, the patient."""
    group = grant_consent(spid=SPID, gln=HCP_GLN, level="normal", template=302, end="2099-12-31")
    actor = group["provision"]["actor"][0]["reference"]["identifier"]
    actor.pop("system")
    actor["type"]["coding"][0]["code"] = "urn:oasis:names:tc:xspa:1.0:subject:organization-id"
    actor["value"] = "urn:oid:2.16.756.5.30.1.999.77"
    mandate = grant_consent(spid=SPID, gln=HCP_GLN, level="normal", template=303,
                            rule="urn:e-health-suisse:2015:policies:access-level:full")
    mandate["provision"]["actor"][0]["role"]["coding"][0]["code"] = "REP"
    mandate["provision"]["actor"][0]["reference"] = {"identifier": {"type": {"coding": [
        {"system": "urn:ietf:rfc:3986", "code": "urn:e-health-suisse:representative-id"}]}, "value": "rep-4711"}}
    del mandate["provision"]["purpose"]
    for consent in (group, mandate):
        created = gateway.client.post("/fhir/Consent", content=orjson.dumps(consent), headers=patient)
        assert created.status_code == 201, created.text
    bundled = [grant_consent(spid=SPID, gln=gln, level="normal") for gln in ("7601000000026", "7601000000033")]
    ppq4 = {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": c, "request": {"method": "POST", "url": "Consent"}} for c in bundled]}
    assert gateway.provide(ppq4, headers=patient).status_code == 200  # PPQ-4: one PPQ-3 record per change
    policy_set_id = next(i["value"] for i in bundled[0]["identifier"]
                         if i["type"]["coding"][0]["code"] == "policySetId")
    bundled[0]["policyRule"]["coding"][0]["code"] = "urn:e-health-suisse:2015:policies:access-level:restricted"
    assert gateway.client.put(f"/fhir/Consent?identifier={policy_set_id}", content=orjson.dumps(bundled[0]),
                              headers=patient).status_code == 200
    assert gateway.client.delete(f"/fhir/Consent?identifier={policy_set_id}", headers=patient).status_code == 204
    representative = gateway.tokens.headers(gateway.tokens.mint(role="REP", user_id="rep-4711", spid=SPID,
                                                                name="Paul Muster"))
    assistant = gateway.tokens.headers(gateway.tokens.mint(role="ASS", gln="7601000000040", name="MPA Rossier",
                                                           principal_gln=HCP_GLN, principal_name="Dr. Luc Favre"))
    emergency = gateway.tokens.headers(gateway.tokens.hcp(purpose="EMER"))
    assert gateway.provide(one_document_bundle(author_role="REP"), headers=representative).status_code == 200
    for headers in (representative, assistant, emergency, patient):
        assert gateway.find(headers=headers).status_code == 200
    assert gateway.client.get(f"/fhir/Binary/{entry_id}", headers=patient).status_code == 200


VENDORED = sorted(p.stem.removeprefix("StructureDefinition-") for p in (IG / "differential").glob("*.json"))
PARENTS = {load_profile(name)["chain"][1].removeprefix(CH_PROFILES) for name in VENDORED
           if len(load_profile(name)["chain"]) > 1}
# Claimed by the mapping (ATC_PROFILES) but written by no exchange: group entries are notified by the
# community's HPD, which the gateway does not run, so nothing records ATC_HPD_* here.
NEVER_EMITTED = {"HpdAuditEvent"}
CLAIMED = [name for name in VENDORED if name not in PARENTS | NEVER_EMITTED]  # ch-atc-auditevent: a parent only


def _atc_subtype(prefix: str):
    return lambda event: len(event["subtype"]) == 1 and event["subtype"][0]["code"].startswith(prefix)


def _responder_is_the_source(event: dict) -> bool:
    return [a["who"] for a in event["agent"] if a.get("type", {}).get("coding", [{}])[0].get("code") == "110152"] == [
        event["source"]["observer"]]


# The profiles' FHIRPath invariants, written out by hand (profile_check evaluates none): every one a vendored
# profile states must be here, so a new one cannot go unnoticed.
INVARIANTS = {
    "ch-atc-dae-1": _atc_subtype("ATC_DOC"),  # subtype.count()=1 and subtype[0].code.startsWith('ATC_DOC')
    "ch-atc-pae-2": _atc_subtype("ATC_POL"),
    "ch-atc-aae-1": lambda event: [c["code"] for c in event["subtype"]] == ["ATC_LOG_READ"],
    "ch-atc-pae-1": _atc_subtype("ATC_HPD"),
    "val-audit-source": _responder_is_the_source,  # agent:documentResponder.who = source.observer
}


@pytest.mark.parametrize("name", CLAIMED)
def test_every_record_claiming_a_ch_profile_conforms_to_its_structure(every_record, name):
    profile = load_profile(name)
    invariants = [c["key"] for e in profile["differential"]["element"] for c in e.get("constraint", [])]
    assert set(invariants) <= set(INVARIANTS), f"invariants not written out: {set(invariants) - set(INVARIANTS)}"
    events = every_record.get(profile["url"], [])
    assert events, f"no record claims {profile['url']}"
    for event in events:
        AuditEvent.model_validate(event)
        assert check(event, profile) == [], (event["id"], check(event, profile))
        assert [key for key in invariants if not INVARIANTS[key](event)] == [], event["id"]


def test_the_structure_check_sees_the_ch_parents_rules_and_says_what_it_cannot_tell():
    """The merged profile carries what only the CH parent states (ch-atc-auditevent fixes the patient entity's
    codes) and a required binding to a vendored value set is checked: a record breaking either is refused; the
    slices sliced outside CH with no CH value are named."""
    trail_profile = load_profile("DocumentAuditEvent")
    assert trail_profile["chain"] == [CH_PROFILES + "DocumentAuditEvent", CH_PROFILES + "ch-atc-auditevent"]
    event = {"resourceType": "AuditEvent", "subtype": [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.7",
                                                        "code": "ATC_DOC_SEARCH"}],
             "purposeOfEvent": [{"coding": [{"code": "NORM"}]}],
             "agent": [{"role": [{"coding": [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.6", "code": "HCP"}]}],
                        "name": "Dr. Favre"}],
             "entity": [{"what": {"identifier": {"system": "urn:oid:2.16.756.5.30.1.127.3.10.3", "value": SPID}},
                         "type": {"code": "1"}, "role": {"code": "1"}}]}
    assert check(event, trail_profile) == []
    event["entity"][0]["what"]["identifier"]["system"] = "urn:oid:2.16.756.5.30.1.127.3.10.99"
    event["agent"][0]["role"][0]["coding"][0]["code"] = "NURSE"
    assert check(event, trail_profile) == [
        'AuditEvent.entity:Patient.what.identifier.system: "urn:oid:2.16.756.5.30.1.127.3.10.99" does not match '
        'fixedUri "urn:oid:2.16.756.5.30.1.127.3.10.3"',
        'AuditEvent.agent.role: {"coding": [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.6", "code": "NURSE"}]} is not '
        'in the required value set http://fhir.ch/ig/ch-epr-fhir/ValueSet/EprParticipant']
    assert unchecked_slices(load_profile("ChAuditEventIti67Responder")) == [
        "AuditEvent.agent:client", "AuditEvent.agent:server", "AuditEvent.entity:patient"]


def test_the_iti68_record_names_the_binary_by_url_and_the_trail_names_the_document_by_uniqueid(every_record):
    """ChAuditEventIti68Responder requires `entity:data.what.reference` (the IG's example: the document's URL);
    the checker recognises that slice by the role its IHE parent gives it (Report), so a record without the
    reference is refused. The patient's trail shows the document as before: its uniqueId, role Report."""
    profile = load_profile("ChAuditEventIti68Responder")
    assert "AuditEvent.entity:data" not in unchecked_slices(profile)
    retrievals = every_record[profile["url"]]
    for event in retrievals:
        [data] = [e for e in event["entity"] if e["type"]["code"] == "2" and e["role"]["code"] == "3"]
        assert re.fullmatch(r"https://testserver/fhir/Binary/[0-9a-f-]{36}", data["what"]["reference"])
        assert data["what"]["identifier"]["system"] == "urn:ihe:iti:xds:2013:uniqueId"
        without = copy.deepcopy(event)
        without["entity"] = [{**e, "what": {"identifier": e["what"]["identifier"]}} if e is data else e
                             for e in event["entity"]]
        assert check(without, profile) == ["AuditEvent.entity:data.what.reference: 0 found, cardinality 1..*"]
    reads = [e for e in every_record[CH_PROFILES + "DocumentAuditEvent"] if e["subtype"][0]["code"] == "ATC_DOC_READ"]
    assert len(reads) >= len(retrievals)
    for event in reads:
        [document] = [e for e in event["entity"] if e["type"]["code"] == "2" and e["role"]["code"] != "26"]
        assert (document["role"]["code"], list(document["what"])) == ("3", ["identifier"])
        assert document["what"]["identifier"]["system"] == "urn:ihe:iti:xds:2013:uniqueId"


def codings(values) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in values}


@pytest.mark.parametrize("shape", SHAPES, ids=[s["profile"].rsplit("/", 1)[1] for s in SHAPES])
def test_each_transactions_record_has_the_shape_of_its_profiles_example(every_record, shape):
    events = every_record.get(shape["profile"], [])
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


def _policy_set_id(consent: dict) -> str:
    return next(i["value"] for i in consent["identifier"] if i["type"]["coding"][0]["code"] == "policySetId")


def _ppq4(method: str, consents: list[dict]) -> dict:
    def request(consent: dict) -> dict:
        url = "Consent" if method == "POST" else f"Consent?identifier={_policy_set_id(consent)}"
        return {"method": method, "url": url}
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{**({"resource": c} if method != "DELETE" else {}), "request": request(c)} for c in consents]}


def test_a_ppq4_bundle_is_recorded_as_one_ppq3_event_per_change_with_its_entries_interaction(tmp_path):
    """PPQ-4 entries are audited one PPQ-3 event each (the IG's PPQ-4 audit example), with the restful
    interaction of the entry's method: POST create (ChAuditEventPpq3Create), PUT update (ChAuditEventPpq3Update)
    also where the PUT creates the policy set (the IG's PpqmFeedRequestBundleUpdate sent to a record that has
    none of them yet: FHIR's update interaction, answered 201), DELETE delete. The patient's trail tells a new
    authorisation from a changed one whatever the method. A single PPQ-3 PUT follows the same rule."""
    from conftest import running_gateway, sqlite_url

    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        gateway.register_patient(grant_hcp=None)
        patient = gateway.tokens.headers(gateway.tokens.patient())
        created = [grant_consent(spid=SPID, gln=gln, level="normal") for gln in (HCP_GLN, "7601000000019")]
        updated = [dict(created[0], policyRule={"coding": [{"system": "urn:ietf:rfc:3986", "code":
                   "urn:e-health-suisse:2015:policies:access-level:restricted"}]}),
                   grant_consent(spid=SPID, gln="7601000000026", level="normal")]  # a PUT that creates
        single = grant_consent(spid=SPID, gln="7601000000033", level="normal")
        ledger = gateway.services.auditor.ledger
        recorded = []
        for bundle in (_ppq4("POST", created), _ppq4("PUT", updated), _ppq4("DELETE", updated)):
            before = len(ledger.all_records())
            answer = gateway.provide(bundle, headers=patient)
            assert answer.status_code == 200, answer.text
            recorded.append((ledger.all_records()[before:],
                             [e["response"]["status"] for e in answer.json()["entry"]]))
        before = len(ledger.all_records())
        put = gateway.client.put(f"/fhir/Consent?identifier={_policy_set_id(single)}", content=orjson.dumps(single),
                                 headers=patient)
        assert put.status_code == 201, put.text
        recorded.append((ledger.all_records()[before:], ["201 Created"]))
        trail = gateway.client.get("/fhir/AuditEvent", params={
            "entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}", "_count": "100"}, headers=patient).json()

    interaction = "http://hl7.org/fhir/restful-interaction"
    assert [([(e["action"], next(c["code"] for c in e["subtype"] if c["system"] == interaction),
               e["meta"]["profile"][0].rsplit("/", 1)[1]) for e in events], statuses) for events, statuses in recorded] == [
        ([("C", "create", "ChAuditEventPpq3Create")] * 2, ["201 Created"] * 2),
        ([("U", "update", "ChAuditEventPpq3Update")] * 2, ["200 OK", "201 Created"]),
        ([("D", "delete", "ChAuditEventPpq3Delete")] * 2, ["204 No Content"] * 2),
        ([("U", "update", "ChAuditEventPpq3Update")], ["201 Created"])]
    for events, _ in recorded:
        for event in events:
            assert check(event, load_profile(event["meta"]["profile"][0].rsplit("/", 1)[1])) == []
            assert {(c["system"], c["code"]) for c in event["subtype"]} >= {
                ("urn:e-health-suisse:event-type-code", "PPQ-3")}
    assert [[atc_view(e)["subtype"][0]["code"] for e in events] for events, _ in recorded] == [
        ["ATC_POL_CREATE_AUT_PART_AL"] * 2, ["ATC_POL_UPDATE_AUT_PART_AL", "ATC_POL_CREATE_AUT_PART_AL"],
        ["ATC_POL_REMOVE_AUT_PART_AL"] * 2, ["ATC_POL_CREATE_AUT_PART_AL"]]
    served = {e["resource"]["id"] for e in trail["entry"]}
    assert {e["id"] for events, _ in recorded for e in events} <= served
