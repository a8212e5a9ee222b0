"""PPQ-3 at the IG's URLs (PUT/DELETE Consent?identifier=<policySetId>) and PPQ-4 Bundles using them,
told apart from ITI-65 Bundles by content and answered with PPQm's own errors (PpqmFeedRequestBundle)."""

import uuid

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from conftest import HCP_GLN, SPID, grant_consent
from functional.helpers import row_counts


@pytest.fixture
def patient(gateway) -> dict:
    gateway.register_patient(grant_hcp=None)
    return gateway.tokens.headers(gateway.tokens.patient())


def policy_set_id(consent: dict) -> str:
    return next(x["value"] for x in consent["identifier"] if x["type"]["coding"][0]["code"] == "policySetId")


def conditional(consent_or_id) -> str:
    value = consent_or_id if isinstance(consent_or_id, str) else policy_set_id(consent_or_id)
    return f"Consent?identifier={value}"


def stored(gateway, policy_id: str, headers) -> int:
    return gateway.client.get("/fhir/Consent", params={"identifier": policy_id}, headers=headers).json()["total"]


def test_conditional_update_creates_then_replaces_and_conditional_delete_removes(gateway, patient):
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal")
    url = "/fhir/" + conditional(consent)

    created = gateway.client.put(url, content=orjson.dumps(consent), headers=patient)
    consent["policyRule"]["coding"][0]["code"] = "urn:e-health-suisse:2015:policies:access-level:restricted"
    replaced = gateway.client.put(url, content=orjson.dumps(consent), headers=patient)

    assert (created.status_code, replaced.status_code) == (201, 200)
    assert replaced.json()["policyRule"] == consent["policyRule"]
    assert stored(gateway, policy_set_id(consent), patient) == 1
    assert gateway.client.delete(url, headers=patient).status_code == 204
    assert stored(gateway, policy_set_id(consent), patient) == 0
    # FHIR: deleting what is already deleted changes nothing and succeeds; an id never stored is 404.
    before = row_counts(gateway.runtime)
    assert gateway.client.delete(url, headers=patient).status_code == 204
    assert row_counts(gateway.runtime) == before
    unknown = gateway.client.delete(f"/fhir/Consent?identifier=urn:uuid:{uuid.uuid4()}", headers=patient)
    assert (unknown.status_code, unknown.json()["issue"][0]["code"]) == (404, "not-found")


@pytest.mark.parametrize("identifier, message", [
    (None, "identifier must name a policy set"),
    ("1234", "identifier must name a policy set"),
    (f"urn:uuid:{uuid.uuid4()}", "the Consent carries policySetId"),
], ids=["missing", "not a uuid", "another policy set"])
def test_a_conditional_update_naming_no_or_another_policy_set_is_refused(gateway, patient, identifier, message):
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal")
    before = row_counts(gateway.runtime)
    response = gateway.client.put("/fhir/Consent", params={"identifier": identifier} if identifier else {},
                                  content=orjson.dumps(consent), headers=patient)
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"].startswith(message)
    assert row_counts(gateway.runtime) == before


def bundle(*entries) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def test_the_igs_ppq4_shapes_put_then_delete_by_conditional_url(gateway, patient):
    consents = [grant_consent(spid=SPID, gln=gln, level="normal") for gln in (HCP_GLN, "7601000000019")]
    puts = bundle(*[{"resource": c, "request": {"method": "PUT", "url": conditional(c)}} for c in consents])
    deletes = bundle(*[{"request": {"method": "DELETE", "url": conditional(c)}} for c in consents])

    put = gateway.provide(puts, headers=patient)
    assert put.status_code == 200, put.text
    assert [e["response"]["status"] for e in put.json()["entry"]] == ["201 Created", "201 Created"]
    assert [e["response"]["etag"] for e in put.json()["entry"]] == ['W/"1"', 'W/"1"']  # the version stored
    assert all("lastModified" in e["response"] for e in put.json()["entry"])
    Bundle.model_validate(put.json())
    again = gateway.provide(puts, headers=patient)
    assert [e["response"]["etag"] for e in again.json()["entry"]] == ['W/"2"', 'W/"2"']
    deleted = gateway.provide(deletes, headers=patient)
    assert deleted.status_code == 200, deleted.text
    assert [e["response"]["status"] for e in deleted.json()["entry"]] == ["204 No Content", "204 No Content"]
    assert [stored(gateway, policy_set_id(c), patient) for c in consents] == [0, 0]


@pytest.mark.parametrize("entries, message", [
    (lambda c: [{"resource": c, "request": {"method": "PUT", "url": conditional(f"urn:uuid:{uuid.uuid4()}")}}],
     "the Consent's policySetId is not the one request.url names"),
    (lambda c: [{"resource": c, "request": {"method": "POST", "url": "Consent"}},
                {"request": {"method": "DELETE", "url": conditional(f"urn:uuid:{uuid.uuid4()}")}}],
     "every entry of a PPQ-4 Bundle uses the same HTTP method"),
    (lambda c: [{"request": {"method": "DELETE", "url": "Consent?identifier=not-a-uuid"}}],
     "identifier must name a policy set"),
    (lambda c: [{"resource": c, "request": {"method": "POST", "url": "Consent"}},
                {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}],
     "a PPQ-4 Bundle holds Consent resources only"),
], ids=["put url names another policy set", "mixed methods", "malformed identifier", "not a Consent"])
def test_a_broken_ppq4_bundle_gets_ppqm_errors_not_mhd_ones_and_stores_nothing(gateway, patient, entries, message):
    before = row_counts(gateway.runtime)
    response = gateway.provide(bundle(*entries(grant_consent(spid=SPID, gln=HCP_GLN, level="normal"))), headers=patient)
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"].startswith(message)
    assert row_counts(gateway.runtime) == before


def test_a_bundle_with_documents_is_an_iti65_bundle_even_if_it_holds_a_consent(gateway, patient):
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal")
    mixed = bundle({"resource": consent, "request": {"method": "POST", "url": "Consent"}},
                   {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Binary", "contentType": "text/plain"},
                    "request": {"method": "POST", "url": "Binary"}})
    response = gateway.provide(mixed, headers=patient)
    assert response.status_code == 422
    assert "Provide Document Bundle" in response.text
