"""The patient's consent end to end over HTTP: grants, blocks, revocation, emergency access, secret."""

import orjson
import pytest

from conftest import HCP_GLN, SPID, grant_consent
from functional.helpers import document_ids, row_counts
from gateway.samples import pdf_document, provide_bundle

OTHER_GLN = "7601000000019"


@pytest.fixture
def record(gateway):
    """A patient without any grant yet, with a normal, a restricted and a secret document
    (the secret one uploaded by the patient, the others by a technical user)."""
    gateway.register_patient(grant_hcp=None)
    tcu = gateway.tokens.headers(gateway.tokens.tcu())
    normal, restricted = document_ids(gateway.provide(provide_bundle(spid=SPID, author_role="TCU", documents=[
        {"title": "Normal", "content": pdf_document("Normal", ["n"])},
        {"title": "Restricted", "confidentiality": "restricted", "content": pdf_document("Restricted", ["r"])},
    ]), headers=tcu).json())
    patient = gateway.tokens.headers(gateway.tokens.patient())
    secret = document_ids(gateway.provide(provide_bundle(spid=SPID, author_role="PAT", documents=[
        {"title": "Secret", "confidentiality": "secret", "content": pdf_document("Secret", ["s"])}]),
        headers=patient).json())[0]
    return {"normal": normal, "restricted": restricted, "secret": secret}


def visible(gateway, headers) -> set[str]:
    response = gateway.find(headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["total"] == len(response.json().get("entry", []))
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


def names(record, *keys) -> set[str]:
    return {record[k] for k in keys}


def patient_headers(gateway):
    return gateway.tokens.headers(gateway.tokens.patient())


def test_hcp_without_grant_finds_nothing_and_reads_nothing(gateway, record):
    hcp = gateway.as_hcp()

    assert visible(gateway, hcp) == set()
    assert gateway.find(headers=hcp).json()["total"] == 0
    missing = gateway.client.get("/fhir/Binary/no-such-document", headers=hcp)
    refused = {entry_id: gateway.client.get(f"/fhir/Binary/{entry_id}", headers=hcp) for entry_id in record.values()}

    # a refusal is indistinguishable from a document that does not exist
    assert {(r.status_code, r.text.replace(i, "ID")) for i, r in refused.items()} == {
        (missing.status_code, missing.text.replace("no-such-document", "ID"))}
    assert missing.status_code == 404


def test_grant_normal_then_restricted_then_block_then_revoke(gateway, record):
    hcp = gateway.as_hcp()

    gateway.grant(SPID, HCP_GLN, "normal")
    assert visible(gateway, hcp) == names(record, "normal")
    assert gateway.client.get(f"/fhir/Binary/{record['restricted']}", headers=hcp).status_code == 404

    gateway.grant(SPID, HCP_GLN, "restricted")
    assert visible(gateway, hcp) == names(record, "normal", "restricted")
    assert gateway.client.get(f"/fhir/Binary/{record['restricted']}", headers=hcp).status_code == 200

    block = grant_consent(spid=SPID, gln=HCP_GLN, level="normal",
                          rule="urn:e-health-suisse:2015:policies:exclusion-list")
    response = gateway.client.post("/fhir/Consent", content=orjson.dumps(block), headers=patient_headers(gateway))
    assert response.status_code == 201, response.text
    assert visible(gateway, hcp) == set()

    delete = gateway.client.delete(f"/fhir/Consent/{response.json()['id']}", headers=patient_headers(gateway))
    assert delete.status_code == 204
    assert visible(gateway, hcp) == names(record, "normal", "restricted")


def test_revocation_takes_effect_on_the_very_next_request(gateway, record):
    hcp = gateway.as_hcp()
    grant_id = gateway.grant(SPID, HCP_GLN, "normal")
    assert gateway.client.get(f"/fhir/Binary/{record['normal']}", headers=hcp).status_code == 200

    assert gateway.client.delete(f"/fhir/Consent/{grant_id}", headers=patient_headers(gateway)).status_code == 204

    assert gateway.client.get(f"/fhir/Binary/{record['normal']}", headers=hcp).status_code == 404
    assert visible(gateway, hcp) == set()


def test_expired_grant_permits_nothing(gateway, record):
    gateway.grant(SPID, HCP_GLN, "restricted", end="2020-12-31")

    assert visible(gateway, gateway.as_hcp()) == set()


def test_grant_to_one_hcp_does_not_open_the_record_to_another(gateway, record):
    gateway.grant(SPID, HCP_GLN, "restricted")
    other = gateway.tokens.headers(gateway.tokens.hcp(gln=OTHER_GLN))

    assert visible(gateway, other) == set()


def test_emergency_access_reads_normal_and_notifies_the_patient(gateway, record):
    emergency = gateway.tokens.headers(gateway.tokens.hcp(purpose="EMER"))
    before = row_counts(gateway.runtime)["patient_notification"]

    found = visible(gateway, emergency)
    read = gateway.client.get(f"/fhir/Binary/{record['normal']}", headers=emergency)
    refused = gateway.client.get(f"/fhir/Binary/{record['restricted']}", headers=emergency)

    assert found == names(record, "normal")
    assert read.status_code == 200
    assert refused.status_code == 404
    assert row_counts(gateway.runtime)["patient_notification"] == before + 2
    notices = gateway.client.get("/fhir/Communication", params={"recipient.identifier":
                                 f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"}, headers=patient_headers(gateway))
    assert notices.status_code == 200
    texts = [e["resource"]["payload"][0]["contentString"] for e in notices.json()["entry"]]
    assert len(texts) == 2
    assert all("Emergency access" in t and "Dr. Luc Favre" in t for t in texts)
    assert {e["resource"]["reasonCode"][0]["coding"][0]["code"] for e in notices.json()["entry"]} == {"EMER"}


def test_a_professional_cannot_read_the_patients_notifications(gateway, record):
    response = gateway.client.get("/fhir/Communication", headers=gateway.as_hcp(),
                                  params={"recipient.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"})

    assert response.status_code == 403


def test_secret_is_for_the_patient_only(gateway, record):
    gateway.grant(SPID, HCP_GLN, "restricted")
    emergency = gateway.tokens.headers(gateway.tokens.hcp(purpose="EMER"))

    assert record["secret"] not in visible(gateway, gateway.as_hcp())
    assert record["secret"] not in visible(gateway, emergency)
    assert visible(gateway, patient_headers(gateway)) == set(record.values())
    assert gateway.client.get(f"/fhir/Binary/{record['secret']}", headers=patient_headers(gateway)).status_code == 200


def test_technical_user_writes_but_never_reads(gateway, record):
    tcu = gateway.tokens.headers(gateway.tokens.tcu())

    assert visible(gateway, tcu) == set()
    assert gateway.client.get(f"/fhir/Binary/{record['normal']}", headers=tcu).status_code == 404


def test_a_patient_reads_only_their_own_record(gateway, record):
    other_patient = gateway.tokens.headers(gateway.tokens.patient("761337610499999991"))

    response = gateway.find(headers=other_patient)

    assert response.status_code == 403
    assert response.json()["issue"][0]["diagnostics"] == "the token is bound to another patient than the one of this request"
    assert gateway.client.get(f"/fhir/Binary/{record['normal']}", headers=other_patient).status_code == 404


def test_provide_level_raises_an_upload_and_never_lowers_it(gateway):
    gateway.register_patient()
    # 203 is managed by the patient: replace the onboarding provide level with "restricted"
    consents = gateway.client.get("/fhir/Consent", params={"patient:identifier":
                                  f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"}, headers=patient_headers(gateway))
    provide = next(e["resource"] for e in consents.json()["entry"]
                   if e["resource"]["identifier"][1]["value"] == "203")
    provide["policyRule"]["coding"][0]["code"] = "urn:e-health-suisse:2015:policies:provide-level:restricted"
    updated = gateway.client.put(f"/fhir/Consent/{provide['id']}", content=orjson.dumps(provide),
                                 headers=patient_headers(gateway))
    assert updated.status_code == 200, updated.text

    entry_id = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Sent as normal", "content": pdf_document("N", ["x"])}])).json())[0]

    stored = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=gateway.as_hcp()).json()
    assert stored["securityLabel"][0]["coding"][0]["code"] == "263856008"


def test_hcp_may_not_grant_on_the_patients_behalf(gateway, record):
    consent = grant_consent(spid=SPID, gln=OTHER_GLN, level="normal")

    response = gateway.client.post("/fhir/Consent", content=orjson.dumps(consent), headers=gateway.as_hcp())

    assert response.status_code == 403
    assert gateway.find(headers=gateway.tokens.headers(gateway.tokens.hcp(gln=OTHER_GLN))).json()["total"] == 0


def test_group_grant_without_end_date_is_a_422_naming_the_end_date(gateway, record):
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal", template=302)
    actor = consent["provision"]["actor"][0]["reference"]["identifier"]
    actor.pop("system")
    actor["type"]["coding"][0]["code"] = "urn:oasis:names:tc:xspa:1.0:subject:organization-id"
    actor["value"] = "urn:oid:2.16.756.5.30.1.999.77"
    before = row_counts(gateway.runtime)

    response = gateway.client.post("/fhir/Consent", content=orjson.dumps(consent), headers=patient_headers(gateway))

    assert response.status_code == 422
    assert "end" in response.json()["issue"][0]["diagnostics"]
    assert response.json()["issue"][0]["expression"] == ["Consent.provision.period.end"]
    assert row_counts(gateway.runtime) == before


def test_group_grant_opens_the_record_to_group_members_within_its_period(gateway, record):
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal", template=302, end="2099-12-31")
    actor = consent["provision"]["actor"][0]["reference"]["identifier"]
    actor.pop("system")
    actor["type"]["coding"][0]["code"] = "urn:oasis:names:tc:xspa:1.0:subject:organization-id"
    actor["value"] = "urn:oid:2.16.756.5.30.1.999.77"
    assert gateway.client.post("/fhir/Consent", content=orjson.dumps(consent),
                               headers=patient_headers(gateway)).status_code == 201
    member = gateway.tokens.headers(gateway.tokens.hcp(gln=OTHER_GLN, groups=("urn:oid:2.16.756.5.30.1.999.77",)))
    outsider = gateway.tokens.headers(gateway.tokens.hcp(gln=OTHER_GLN))

    assert visible(gateway, member) == names(record, "normal")
    assert visible(gateway, outsider) == set()


def consent_bundle(*entries) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def test_ppq4_stores_a_bundle_of_changes_all_or_nothing(gateway, record):
    good = grant_consent(spid=SPID, gln=HCP_GLN, level="normal")
    bad = grant_consent(spid=SPID, gln=OTHER_GLN, level="normal", template=304)  # 304 needs an end date
    before = row_counts(gateway.runtime)

    refused = gateway.client.post("/fhir", content=orjson.dumps(consent_bundle(
        {"resource": good, "request": {"method": "POST", "url": "Consent"}},
        {"resource": bad, "request": {"method": "POST", "url": "Consent"}})), headers=patient_headers(gateway))

    assert refused.status_code == 422
    assert row_counts(gateway.runtime) == before
    assert visible(gateway, gateway.as_hcp()) == set()

    accepted = gateway.client.post("/fhir", content=orjson.dumps(consent_bundle(
        {"resource": good, "request": {"method": "POST", "url": "Consent"}})), headers=patient_headers(gateway))

    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["type"] == "transaction-response"
    assert [e["response"]["status"] for e in accepted.json()["entry"]] == ["201 Created"]
    assert visible(gateway, gateway.as_hcp()) == names(record, "normal")


def representative_consent(rep_id: str) -> dict:
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal", template=303,
                            rule="urn:e-health-suisse:2015:policies:access-level:full")
    actor = consent["provision"]["actor"][0]
    actor["role"]["coding"][0]["code"] = "REP"
    actor["reference"] = {"identifier": {"type": {"coding": [{"system": "urn:ietf:rfc:3986",
                                                              "code": "urn:e-health-suisse:representative-id"}]},
                                         "value": rep_id}}
    del consent["provision"]["purpose"]
    return consent


def test_a_representative_reads_everything_while_the_patient_names_them(gateway, record):
    representative = gateway.tokens.headers(gateway.tokens.mint(role="REP", user_id="rep-4711", spid=SPID,
                                                                name="Paul Muster"))
    assert visible(gateway, representative) == set()

    response = gateway.client.post("/fhir/Consent", content=orjson.dumps(representative_consent("rep-4711")),
                                   headers=patient_headers(gateway))

    assert response.status_code == 201, response.text
    assert visible(gateway, representative) == set(record.values())
    assert gateway.client.get(f"/fhir/Binary/{record['secret']}", headers=representative).status_code == 200
    other = gateway.tokens.headers(gateway.tokens.mint(role="REP", user_id="rep-9999", spid=SPID, name="Someone"))
    assert visible(gateway, other) == set()


def test_an_assistant_reads_with_at_most_its_principals_rights(gateway, record):
    gateway.grant(SPID, HCP_GLN, "normal")
    for_granted = gateway.tokens.headers(gateway.tokens.mint(role="ASS", gln=OTHER_GLN, name="MPA Rossier",
                                                             principal_gln=HCP_GLN, principal_name="Dr. Luc Favre"))
    for_other = gateway.tokens.headers(gateway.tokens.mint(role="ASS", gln=HCP_GLN, name="MPA Favre",
                                                           principal_gln=OTHER_GLN, principal_name="Dr. Other"))

    assert visible(gateway, for_granted) == names(record, "normal")
    assert visible(gateway, for_other) == set()


def test_an_hcp_with_a_delegation_right_delegates_at_most_its_own_level(gateway, record):
    delegation = grant_consent(spid=SPID, gln=HCP_GLN, level="normal", template=304, end="2099-12-31",
                               rule="urn:e-health-suisse:2015:policies:access-level:delegation-and-normal")
    assert gateway.client.post("/fhir/Consent", content=orjson.dumps(delegation),
                               headers=patient_headers(gateway)).status_code == 201
    colleague = gateway.tokens.headers(gateway.tokens.hcp(gln=OTHER_GLN))
    too_much = grant_consent(spid=SPID, gln=OTHER_GLN, level="restricted", end="2099-06-30")
    within = grant_consent(spid=SPID, gln=OTHER_GLN, level="normal", end="2099-06-30")

    refused = gateway.client.post("/fhir/Consent", content=orjson.dumps(too_much), headers=gateway.as_hcp())
    accepted = gateway.client.post("/fhir/Consent", content=orjson.dumps(within), headers=gateway.as_hcp())

    assert refused.status_code == 403
    assert "exceeds" in refused.json()["issue"][0]["diagnostics"]
    assert accepted.status_code == 201, accepted.text
    assert visible(gateway, colleague) == names(record, "normal")
