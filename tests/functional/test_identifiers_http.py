"""Identifiers over HTTP (issue 10, item 4): a trailing newline or digits of another script in a
uniqueId, SubmissionSet id, policySetId, SPID, GLN, AHVN13 or OID are refused, with nothing stored;
and ITI-81 pages its trail with `_count` like ITI-67 (item 6)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from conftest import HCP_GLN, LOCAL_SYSTEM, SEARCH, SPID, grant_consent
from gateway.samples import new_oid_unique_id, patient_feed
from helpers import one_document_bundle, row_counts

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
MATHEMATICAL = str.maketrans("0123456789", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗")


def _with_master(value):
    bundle = one_document_bundle()
    next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")[
        "masterIdentifier"]["value"] = value
    return bundle


def _with_author_gln(value):
    return one_document_bundle(author_gln=value)


def _with_submission_id(value):
    bundle = one_document_bundle()
    listed = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "List")
    next(i for i in listed["identifier"] if i.get("use") == "usual")["value"] = value
    return bundle


def _with_spid(value):
    return one_document_bundle(spid=value)


@pytest.mark.parametrize("bundle, where", [
    (_with_master(new_oid_unique_id() + "\n"), "masterIdentifier"),
    (_with_master("urn:oid:1.2.3." + "4711".translate(FULL_WIDTH)), "masterIdentifier"),
    (_with_submission_id(new_oid_unique_id() + "\n"), "identifier"),
    (_with_author_gln(HCP_GLN.translate(ARABIC_INDIC)), "contained[1].identifier[0]"),
    (_with_author_gln(HCP_GLN + "\n"), "contained[1].identifier[0]"),
    (_with_spid(SPID.translate(MATHEMATICAL)), "subject.identifier.value"),
], ids=["uniqueId-newline", "uniqueId-full-width", "submission-set-newline", "author-gln-arabic-indic",
        "author-gln-newline", "spid-mathematical"])
def test_iti65_refuses_spoiled_identifiers_and_stores_nothing(sqlite_gateway, bundle, where):
    sqlite_gateway.register_patient()
    before = row_counts(sqlite_gateway.runtime)
    response = sqlite_gateway.provide(bundle)
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(where in e for issue in outcome["issue"] for e in issue.get("expression", [])), outcome
    assert row_counts(sqlite_gateway.runtime) == before


def test_iti65_stores_an_id_once_not_beside_its_newline_twin(sqlite_gateway):
    sqlite_gateway.register_patient()
    unique_id = new_oid_unique_id()
    assert sqlite_gateway.provide(_with_master(unique_id)).status_code == 200
    assert sqlite_gateway.provide(_with_master(unique_id + "\n")).status_code == 422
    found = sqlite_gateway.find().json()
    assert [e["resource"]["masterIdentifier"]["value"] for e in found["entry"]] == [unique_id]


def test_ppq3_refuses_a_policy_set_id_with_a_newline_and_nothing_is_in_force(sqlite_gateway):
    sqlite_gateway.register_patient(grant_hcp=None)
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal")
    consent["identifier"][0]["value"] += "\n"
    before = row_counts(sqlite_gateway.runtime)
    response = sqlite_gateway.client.post("/fhir/Consent", content=orjson.dumps(consent),
                                          headers=sqlite_gateway.tokens.headers(sqlite_gateway.tokens.patient()))
    assert (response.status_code, response.json()["resourceType"]) == (422, "OperationOutcome")
    assert row_counts(sqlite_gateway.runtime) == before
    assert sqlite_gateway.find().status_code == 403 or sqlite_gateway.find().json()["total"] == 0


@pytest.mark.parametrize("identifiers", [
    [{"system": LOCAL_SYSTEM, "value": "L-9"}, {"system": "urn:oid:2.16.756.5.30.1.127.3.10.3",
                                               "value": SPID.translate(FULL_WIDTH)}],
    [{"system": LOCAL_SYSTEM, "value": "L-9"}, {"system": "urn:oid:2.16.756.5.30.1.127.3.10.3", "value": SPID + "\n"}],
    [{"system": LOCAL_SYSTEM, "value": "L-9"}, {"system": "urn:oid:2.16.756.5.32",
                                               "value": "7561234567897".translate(ARABIC_INDIC)}],
    [{"system": LOCAL_SYSTEM, "value": "L-9"}, {"system": "urn:oid:2.51.1.3", "value": HCP_GLN.translate(MATHEMATICAL)}],
    [{"system": "urn:oid:2.16.756.5.30.1.999.2." + "1".translate(FULL_WIDTH), "value": "L-9"}],
    [{"system": LOCAL_SYSTEM, "value": "L-9\n"}],
], ids=["spid-full-width", "spid-newline", "ahvn13-arabic-indic", "gln-mathematical", "oid-system-full-width",
        "local-id-newline"])
def test_iti104_refuses_spoiled_identifiers_and_creates_no_patient(sqlite_gateway, identifiers):
    body = patient_feed(spid=SPID, local_system=LOCAL_SYSTEM, local_id="L-9", family="Muster", given="Anna",
                        birth_date="1980-05-17", gender="female")
    body["identifier"] = identifiers
    before = row_counts(sqlite_gateway.runtime)
    response = sqlite_gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-9", content=orjson.dumps(body),
                                         headers=sqlite_gateway.as_hcp())
    assert (response.status_code, response.json()["resourceType"]) == (400, "OperationOutcome"), response.text
    assert row_counts(sqlite_gateway.runtime) == before


# -- ITI-81 pages like ITI-67 (item 6) --------------------------------------------------------------

def _trail(gateway, **params):
    return gateway.client.get("/fhir/AuditEvent", params={"entity.identifier": SEARCH + SPID, **params},
                              headers=gateway.tokens.headers(gateway.tokens.patient()))


def test_iti81_pages_the_trail_with_count_and_next_links(sqlite_gateway):
    sqlite_gateway.register_patient()
    for _ in range(3):
        assert sqlite_gateway.provide(one_document_bundle()).status_code == 200
    everything = _trail(sqlite_gateway, _count="100").json()
    total = everything["total"]
    assert total >= 5 and len(everything["entry"]) == total
    assert [link["relation"] for link in everything["link"]] == ["self"]

    seen, url, pages = [], "/fhir/AuditEvent?" + f"entity.identifier={SEARCH}{SPID}&_count=2", 0
    while url and pages < 50:
        page = sqlite_gateway.client.get(url, headers=sqlite_gateway.tokens.headers(sqlite_gateway.tokens.patient()))
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["entry"]) <= 2
        seen += [e["resource"]["id"] for e in body["entry"]]
        nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
        url = ("/fhir/AuditEvent?" + urlsplit(nxt[0]).query) if nxt else None
        pages += 1
    # Each read of the trail is itself recorded, so later pages may see newer events: compare the
    # first `total` ids, which were there from the start and are ordered oldest first.
    assert seen[:total] == [e["resource"]["id"] for e in everything["entry"]]
    assert dict(parse_qsl(urlsplit(nxt[0] if nxt else "http://x/?_count=2").query)).get("_count") == "2"


@pytest.mark.parametrize("params", [{"_count": "abc"}, {"_count": "-1"}, {"_count": "²"}, {"_offset": "-1"},
                                    {"_offset": "x"}])
def test_iti81_refuses_a_bad_count_or_offset(sqlite_gateway, params):
    sqlite_gateway.register_patient()
    response = _trail(sqlite_gateway, **params)
    assert (response.status_code, response.json()["resourceType"]) == (400, "OperationOutcome")
    assert response.json()["issue"][0]["expression"] == [next(iter(params))]
