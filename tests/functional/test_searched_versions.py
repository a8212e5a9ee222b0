"""meta.versionId and meta.lastUpdated of the resources inside searchset Bundles (issue 13): every
entry of ITI-67, PDQm (ITI-78), $match (ITI-119) and PPQ-5, and the Patient a $merge answers, carries
the version and the instant a read of the same resource gives (and its ETag names), also after an
update. Over HTTP, on SQLite and PostgreSQL (the lastUpdated of a DocumentReference is joined in the
search's SQL); every answer validated with the R4B models."""

from __future__ import annotations

import orjson
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters

from conftest import HCP_GLN, LOCAL_SYSTEM, OTHER_SPID, SEARCH, SPID
from functional.helpers import document_ids
from functional.test_identity import admin, merge_body
from functional.test_pdqm_match import ANNA, match
from gateway.samples import patient_feed, pdf_document, provide_bundle

RESTRICTED = "urn:e-health-suisse:2015:policies:access-level:restricted"


def searched(response) -> dict[str, dict]:
    """{id: resource} of a searchset answer, validated."""
    assert response.status_code == 200, response.text
    Bundle.model_validate(response.json())
    return {e["resource"]["id"]: e["resource"] for e in response.json().get("entry", [])}


def read_meta(gateway, path: str, headers) -> tuple[str, str, str]:
    """(versionId, lastUpdated, ETag) a read of `path` gives."""
    read = gateway.client.get(path, headers=headers)
    assert read.status_code == 200, read.text
    meta = read.json()["meta"]
    return meta["versionId"], meta["lastUpdated"], read.headers["etag"]


def searched_meta(resource: dict) -> tuple[str, str, str]:
    meta = resource["meta"]
    return meta["versionId"], meta["lastUpdated"], f'W/"{meta["versionId"]}"'


def test_iti67_entries_carry_the_version_and_instant_a_read_gives(gateway):
    gateway.register_patient(grant_hcp="restricted")
    hcp = gateway.as_hcp()
    ids = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["a"])},
        {"title": "Report", "content": pdf_document("Report", ["b"])}])).json())
    found = searched(gateway.find())
    assert set(found) == set(ids)
    for entry_id in ids:
        assert searched_meta(found[entry_id]) == read_meta(gateway, f"/fhir/DocumentReference/{entry_id}", hcp)
        assert found[entry_id]["meta"]["versionId"] == "1"

    # An update (CH:MHD-1) of one: the next search answers version 2 and its instant, as the read does.
    letter = ids[0]
    changed = {**gateway.client.get(f"/fhir/DocumentReference/{letter}", headers=hcp).json(),
               "description": "Corrected letter"}
    updated = gateway.client.put(f"/fhir/DocumentReference/{letter}", content=orjson.dumps(changed),
                                 headers={**hcp, "If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    again = searched(gateway.find())
    assert searched_meta(again[letter])[0] == "2"
    assert searched_meta(again[letter]) == read_meta(gateway, f"/fhir/DocumentReference/{letter}", hcp)
    assert again[letter]["meta"]["lastUpdated"] >= found[letter]["meta"]["lastUpdated"]
    assert searched_meta(again[ids[1]]) == searched_meta(found[ids[1]])
    # The same from a page the gateway remembers (the second identical search).
    assert searched(gateway.find())[letter]["meta"] == again[letter]["meta"]


def test_pdqm_and_match_entries_carry_the_version_a_read_gives(gateway):
    fed = gateway.register_patient(grant_hcp=None)
    hcp = gateway.as_hcp()

    def both() -> tuple[dict, dict]:
        pdq = searched(gateway.client.get("/fhir/Patient", params={"family": "Muster"}, headers=hcp))
        matched = searched(match(gateway, ANNA))
        return pdq[fed["id"]], matched[fed["id"]]

    for resource in both():
        assert searched_meta(resource) == read_meta(gateway, f"/fhir/Patient/{fed['id']}", hcp)
        assert resource["meta"]["versionId"] == "1"
    refed = gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-1", headers=hcp, content=orjson.dumps(
        patient_feed(spid=SPID, local_system=LOCAL_SYSTEM, local_id="L-1", family="Muster", given="Anna",
                     birth_date="1980-05-17", gender="female")))
    assert refed.status_code == 200, refed.text
    for resource in both():
        assert searched_meta(resource) == read_meta(gateway, f"/fhir/Patient/{fed['id']}", hcp)
        assert resource["meta"]["versionId"] == "2"


def test_the_patient_a_merge_answers_carries_the_version_a_read_gives(gateway):
    surviving = gateway.register_patient()["id"]
    retired = gateway.register_patient(spid=OTHER_SPID, local_id="L-2", given="Berta")["id"]
    merged = gateway.client.post("/fhir/Patient/$merge", content=merge_body(retired, surviving), headers=admin(gateway))
    assert merged.status_code == 200, merged.text
    Parameters.model_validate(merged.json())
    result = merged.json()["parameter"][1]["resource"]
    assert result["id"] == surviving
    assert searched_meta(result) == read_meta(gateway, f"/fhir/Patient/{surviving}", gateway.as_hcp())


def test_ppq5_entries_carry_the_version_a_read_gives(gateway):
    gateway.register_patient(grant_hcp=None)
    grant_id = gateway.grant(SPID, HCP_GLN, "normal")
    patient = gateway.tokens.headers(gateway.tokens.patient(SPID))

    def consents() -> dict[str, dict]:
        return searched(gateway.client.get("/fhir/Consent", params={"patient:identifier": SEARCH + SPID},
                                           headers=patient))

    found = consents()
    assert grant_id in found and len(found) > 1  # the onboarding's policy sets and the grant
    for cid, resource in found.items():
        assert searched_meta(resource) == read_meta(gateway, f"/fhir/Consent/{cid}", patient)
    assert found[grant_id]["meta"]["versionId"] == "1"
    body = {k: v for k, v in found[grant_id].items() if k != "meta"}
    body["policyRule"]["coding"][0]["code"] = RESTRICTED
    updated = gateway.client.put(f"/fhir/Consent/{grant_id}", content=orjson.dumps(body),
                                 headers={**patient, "If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    after = consents()[grant_id]
    assert searched_meta(after)[0] == "2"
    assert searched_meta(after) == read_meta(gateway, f"/fhir/Consent/{grant_id}", patient)
