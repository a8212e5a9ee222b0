"""Item 1 of the hardening issue: a request may name (replace, append to, transform, sign) only a
document its submitter may read, or one the same technical user submitted itself on behalf of the
same professional. Any other target answers exactly like one that does not exist, and nothing
changes: no existence oracle (unknown 422 / existing 200 / already replaced 409 before the fix)."""

import orjson
import pytest

from conftest import HCP_GLN, SPID
from functional.helpers import document_ids, one_document_bundle, row_counts
from gateway.samples import new_oid_unique_id, pdf_document, provide_bundle

OTHER_GLN = "7601000000019"  # an HCP the patient granted nothing
CODES = ("replaces", "appends", "transforms", "signs")


def naming(target: dict, code: str, *, spid: str = SPID, author_role: str = "HCP") -> dict:
    """A one-document Bundle whose DocumentReference names `target` ({"id": …} or {"uniqueId": …})."""
    bundle = provide_bundle(spid=spid, author_role=author_role, documents=[
        {"title": "New version", "content": pdf_document("New version", ["v2"])}])
    reference = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    named = ({"reference": f"DocumentReference/{target['id']}"} if "id" in target
             else {"identifier": {"system": "urn:ietf:rfc:3986", "value": target["uniqueId"]}})
    reference["relatesTo"] = [{"code": code, "target": named}]
    return bundle


def tcu_headers(gateway, user_id: str = "infomed-migration", gln: str = HCP_GLN) -> dict:
    return gateway.tokens.headers(gateway.tokens.mint(role="TCU", user_id=user_id, principal_gln=gln,
                                                      name="Migration"))


@pytest.fixture
def record(gateway):
    """The patient's secret document (their own upload), a restricted one filed by a technical user,
    and a secret one already replaced by the patient; the HCP OTHER_GLN has no grant."""
    gateway.register_patient()
    patient = gateway.tokens.headers(gateway.tokens.patient())
    secret_uid, old_uid = new_oid_unique_id(), new_oid_unique_id()
    secret = document_ids(gateway.provide(provide_bundle(spid=SPID, author_role="PAT", documents=[
        {"title": "Secret", "confidentiality": "secret", "unique_id": secret_uid,
         "content": pdf_document("Secret", ["s"])}]), headers=patient).json())[0]
    old = document_ids(gateway.provide(provide_bundle(spid=SPID, author_role="PAT", documents=[
        {"title": "Old", "confidentiality": "secret", "unique_id": old_uid,
         "content": pdf_document("Old", ["o"])}]), headers=patient).json())[0]
    replaced = gateway.provide(provide_bundle(spid=SPID, author_role="PAT", documents=[
        {"title": "Newer", "confidentiality": "secret", "replaces": old, "content": pdf_document("Newer", ["n"])}]),
        headers=patient)
    assert replaced.status_code == 200, replaced.text
    restricted_uid = new_oid_unique_id()
    restricted = document_ids(gateway.provide(provide_bundle(spid=SPID, author_role="TCU", documents=[
        {"title": "Restricted", "confidentiality": "restricted", "unique_id": restricted_uid,
         "content": pdf_document("Restricted", ["r"])}]), headers=tcu_headers(gateway)).json())[0]
    return {"secret": (secret, secret_uid), "replaced": (old, old_uid), "restricted": (restricted, restricted_uid)}


def answer(response, key: str) -> tuple[int, str]:
    return response.status_code, response.text.replace(key, "KEY")


@pytest.mark.parametrize("code", CODES)
def test_naming_an_unreadable_document_answers_like_naming_a_missing_one(gateway, record, code):
    ungranted = gateway.tokens.headers(gateway.tokens.hcp(gln=OTHER_GLN))
    counts = row_counts(gateway.runtime)
    missing_id, missing_uid = "no-such-document", new_oid_unique_id()
    expected = {answer(gateway.provide(naming({"id": missing_id}, code), ungranted), missing_id),
                answer(gateway.provide(naming({"uniqueId": missing_uid}, code), ungranted), missing_uid)}

    answers = set()
    for entry_id, unique_id in (record["secret"], record["replaced"]):
        answers.add(answer(gateway.provide(naming({"id": entry_id}, code), ungranted), entry_id))
        answers.add(answer(gateway.provide(naming({"uniqueId": unique_id}, code), ungranted), unique_id))

    assert answers == expected
    assert {status for status, _ in expected} == {422}
    assert row_counts(gateway.runtime) == counts
    patient = gateway.tokens.headers(gateway.tokens.patient())
    secret = gateway.client.get(f"/fhir/DocumentReference/{record['secret'][0]}", headers=patient).json()
    assert secret["status"] == "current"


def test_a_granted_hcp_cannot_name_a_secret_document_either(gateway, record):
    granted = gateway.as_hcp()  # restricted grant: never secret
    counts = row_counts(gateway.runtime)

    response = gateway.provide(naming({"uniqueId": record["secret"][1]}, "replaces"), granted)

    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["DocumentReference.relatesTo.target"]
    assert row_counts(gateway.runtime) == counts


def test_a_readable_document_may_be_replaced_and_then_not_again(gateway, record):
    granted = gateway.as_hcp()
    entry_id, _ = record["restricted"]

    first = gateway.provide(naming({"id": entry_id}, "replaces"), granted)
    again = gateway.provide(naming({"id": entry_id}, "replaces"), granted)

    assert first.status_code == 200, first.text
    assert again.status_code == 409  # it may read it: saying it is already replaced discloses nothing
    old = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=granted).json()
    assert old["status"] == "superseded"


def test_a_technical_user_replaces_what_it_submitted_itself_only(gateway, record):
    entry_id, unique_id = record["restricted"]  # submitted by infomed-migration for HCP_GLN
    counts = row_counts(gateway.runtime)
    other_user = gateway.provide(naming({"uniqueId": unique_id}, "replaces", author_role="TCU"),
                                 tcu_headers(gateway, user_id="hl7-bridge"))
    other_gln = gateway.provide(naming({"uniqueId": unique_id}, "replaces", author_role="TCU"),
                                tcu_headers(gateway, gln=OTHER_GLN))
    secret = gateway.provide(naming({"uniqueId": record["secret"][1]}, "replaces", author_role="TCU"),
                             tcu_headers(gateway))
    missing = gateway.provide(naming({"uniqueId": "urn:oid:2.25.1"}, "replaces", author_role="TCU"),
                              tcu_headers(gateway))
    assert {answer(r, k) for r, k in ((other_user, unique_id), (other_gln, unique_id),
                                      (secret, record["secret"][1]), (missing, "urn:oid:2.25.1"))} \
        == {answer(missing, "urn:oid:2.25.1")}
    assert row_counts(gateway.runtime) == counts

    own = gateway.provide(naming({"uniqueId": unique_id}, "replaces", author_role="TCU"), tcu_headers(gateway))

    assert own.status_code == 200, own.text
    old = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=gateway.as_hcp()).json()
    assert old["status"] == "superseded"


def test_the_provide_path_without_http_applies_the_same_rule(gateway, record):
    """`DocumentExchange.provide_submission` (XDM migration, HL7 v2 bridge) passes the same check."""
    from adapters.cara import fhir_mapping
    from adapters.cara.errors import ProfileViolation
    from consent.principal import Principal

    ungranted = Principal(role="HCP", user_id=OTHER_GLN)
    submission = fhir_mapping.submission_from_bundle(naming({"id": record["secret"][0]}, "appends"))
    counts = row_counts(gateway.runtime)

    with pytest.raises(ProfileViolation, match="is not a document of this patient"):
        gateway.services.exchange.provide_submission(principal=ungranted, submission=submission)
    assert row_counts(gateway.runtime) == counts


def test_the_stored_entry_records_its_submitter(gateway, record):
    from adapters.cara.model import Submitter

    entry = gateway.services.exchange.documents.get_entry(record["restricted"][0])

    assert entry.submitter == Submitter(role="TCU", user_id="infomed-migration", acting_for=HCP_GLN)
    assert (entry.original_provider_role.system, entry.original_provider_role.code) == (
        "urn:oid:2.16.756.5.30.1.127.3.10.6", "TCU")


def test_metadata_sealed_before_submitters_were_recorded_still_opens(gateway, record):
    from adapters.cara.model import DocumentEntry

    entry = gateway.services.exchange.documents.get_entry(record["secret"][0])
    legacy = entry.to_json()
    del legacy["submitter"]

    assert DocumentEntry.from_json(orjson.loads(orjson.dumps(legacy))).submitter is None
