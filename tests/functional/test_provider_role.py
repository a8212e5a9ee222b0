"""Item 3 of the hardening issue: originalProviderRole comes from the authenticated principal. A
request stating another role is refused (422, with the FHIRPath of the value) and nothing is
stored; before the fix an HCP without a grant and a TCU each stored documents as the patient's."""

from dataclasses import replace

import pytest

from adapters.cara import fhir_mapping
from adapters.cara.vocabulary import EXT_AUTHOR_ROLE, ROLE_SYSTEM, ROLES
from conftest import HCP_GLN, SPID
from functional.helpers import document_ids, row_counts
from gateway.samples import pdf_document, provide_bundle

UNGRANTED_GLN = "7601000000019"


def writers(gateway) -> dict[str, dict]:
    """A token for every role that may upload to the patient's record."""
    mint = gateway.tokens.mint
    return {
        "HCP": gateway.tokens.headers(gateway.tokens.hcp(gln=UNGRANTED_GLN)),
        "ASS": gateway.tokens.headers(mint(role="ASS", gln="7601003336382", principal_gln=HCP_GLN, name="MPA")),
        "TCU": gateway.tokens.headers(gateway.tokens.tcu()),
        "PAT": gateway.tokens.headers(gateway.tokens.patient()),
    }


def bundle(author_role: str) -> dict:
    # Two documents (entries 1 and 3): the finding points at the first one's value.
    return provide_bundle(spid=SPID, author_role=author_role, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["x"])},
        {"title": "Report", "content": pdf_document("Report", ["y"])}])


def test_every_other_role_in_the_request_is_refused_for_every_writer(sqlite_gateway):
    gateway = sqlite_gateway
    gateway.register_patient()
    counts = row_counts(gateway.runtime)
    answers = {}
    for role, headers in writers(gateway).items():
        for stated in ROLES:
            if stated != role:
                response = gateway.provide(bundle(stated), headers)
                answers[(role, stated)] = (response.status_code, tuple(response.json()["issue"][0]["expression"]))

    assert set(answers.values()) == {(422, (f"Bundle.entry[1].resource.extension('{EXT_AUTHOR_ROLE}').valueCoding",))}
    assert len(answers) == 4 * (len(ROLES) - 1)
    assert row_counts(gateway.runtime) == counts


def test_an_ungranted_hcp_and_a_tcu_cannot_pass_an_upload_off_as_the_patients(gateway):
    gateway.register_patient()
    counts = row_counts(gateway.runtime)
    tokens = writers(gateway)

    refused = [gateway.provide(bundle("PAT"), tokens[role]) for role in ("HCP", "TCU")]

    assert [r.status_code for r in refused] == [422, 422]
    assert all("is not the role of the authenticated user" in r.json()["issue"][0]["diagnostics"] for r in refused)
    assert row_counts(gateway.runtime) == counts


def test_the_stated_role_when_it_matches_is_what_is_stored(gateway):
    gateway.register_patient()
    patient = writers(gateway)["PAT"]
    stored = {}
    for role, headers in writers(gateway).items():
        response = gateway.provide(bundle(role), headers)
        assert response.status_code == 200, response.text
        for entry_id in document_ids(response.json()):
            read = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=patient).json()
            stored.setdefault(role, set()).add(
                tuple(e["valueCoding"]["code"] for e in read["extension"] if e["url"] == EXT_AUTHOR_ROLE))

    assert stored == {role: {(role,)} for role in ("HCP", "ASS", "TCU", "PAT")}


def test_a_model_level_provide_without_a_role_gets_the_principals(gateway):
    """What an XDM or HL7 v2 mapping may leave out, the gateway fills in from the principal."""
    from consent.principal import Principal

    gateway.register_patient()
    submission = fhir_mapping.submission_from_bundle(bundle("TCU"))
    submission = replace(submission, documents=tuple(
        replace(d, entry=replace(d.entry, original_provider_role=None), location=None) for d in submission.documents))
    tcu = Principal(role="TCU", user_id="infomed-migration", acting_for=HCP_GLN, purpose_of_use="AUTO")

    stored, result = gateway.services.exchange.provide_submission(principal=tcu, submission=submission)

    roles = {(d.entry.original_provider_role.system, d.entry.original_provider_role.code) for d in stored.documents}
    assert roles == {(ROLE_SYSTEM, "TCU")}
    reread = [gateway.services.exchange.documents.get_entry(d.entry_id) for d in result.documents]
    assert {(e.original_provider_role.code, e.submitter.user_id) for e in reread} == {("TCU", "infomed-migration")}


def test_a_model_level_provide_stating_another_role_is_refused_without_a_location(gateway):
    from adapters.cara.errors import ProfileViolation
    from consent.principal import Principal

    gateway.register_patient()
    submission = fhir_mapping.submission_from_bundle(bundle("PAT"))
    submission = replace(submission, documents=tuple(replace(d, location=None) for d in submission.documents))
    tcu = Principal(role="TCU", user_id="infomed-migration", acting_for=HCP_GLN, purpose_of_use="AUTO")
    counts = row_counts(gateway.runtime)

    with pytest.raises(ProfileViolation) as refused:
        gateway.services.exchange.provide_submission(principal=tcu, submission=submission)
    assert refused.value.issues[0].location == f"DocumentReference.extension('{EXT_AUTHOR_ROLE}').valueCoding"
    assert row_counts(gateway.runtime) == counts


def test_one_rule_for_the_role_and_both_refusals_say_it(sqlite_gateway):
    """The profile requires originalProviderRole and the gateway requires the token's: a bundle without it
    and a bundle with another role are both told to send the token's role (not "leave it out")."""
    gateway = sqlite_gateway
    gateway.register_patient()
    without = bundle("HCP")
    for entry in without["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "DocumentReference":
            resource["extension"] = [e for e in resource.get("extension", []) if e["url"] != EXT_AUTHOR_ROLE]
    missing = gateway.provide(without, gateway.as_hcp())
    other = gateway.provide(bundle("PAT"), gateway.as_hcp())

    assert (missing.status_code, other.status_code) == (422, 422)
    said = [r.json()["issue"][0]["diagnostics"] for r in (missing, other)]
    assert all(f"send the role of your token" in text and "leave it out" not in text for text in said), said
    assert "(HCP)" in said[1]
