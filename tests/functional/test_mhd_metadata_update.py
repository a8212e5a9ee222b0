"""CH:MHD-1 Update Document Metadata over HTTP: PUT DocumentReference and a Bundle of PUTs, the IG's
error codes, who may change what, deletion by the document administrator, versions and audit."""

import copy

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference

from conftest import OTHER_SPID, SPID
from functional.helpers import document_ids, row_counts
from functional.test_audit_exchanges import ledger
from gateway.samples import pdf_document, provide_bundle

DELETION_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.18"
EXT_DELETION = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-ext-deletionstatus"
REQUESTED = "urn:e-health-suisse:2019:deletionStatus:deletionRequested"


@pytest.fixture
def two_letters(gateway) -> list[str]:
    gateway.register_patient(grant_hcp="restricted")
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul")
    bundle = provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "type_code": "373942005", "content": pdf_document("Letter", ["a"])},
        {"title": "Lab", "type_code": "4241000179101", "content": pdf_document("Lab", ["b"])}])
    return document_ids(gateway.provide(bundle).json())


def current(gateway, entry_id: str, headers=None) -> dict:
    response = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=headers or gateway.as_hcp())
    assert response.status_code == 200, response.text
    return response.json()


def put(gateway, resource: dict, headers=None, entry_id: str | None = None):
    return gateway.client.put(f"/fhir/DocumentReference/{entry_id or resource['id']}", content=orjson.dumps(resource),
                              headers=headers or gateway.as_hcp())


def update_bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": r, "request": {"method": "PUT", "url": f"DocumentReference/{r['id']}"}}
                      for r in resources]}


def error(response) -> tuple[int, str, str]:
    issue = response.json()["issue"][0]
    return response.status_code, issue["code"], issue.get("details", {}).get("text")


def updates(gateway) -> list[tuple]:
    return [record for record in ledger(gateway) if record[0] == "CH-MHD-1"]


def dadm(gateway) -> dict:
    return gateway.tokens.headers(gateway.tokens.mint(role="DADM", user_id="dadm-1", name="Document administrator"))


def test_a_professional_updates_the_description_and_type_as_a_new_version(gateway, two_letters):
    letter = current(gateway, two_letters[0])
    letter["description"] = "Corrected letter"
    letter["type"] = {"coding": [{"system": "http://snomed.info/sct", "code": "371526002", "display": "Operative report"}]}

    response = put(gateway, letter)

    assert response.status_code == 200, response.text
    updated = response.json()
    DocumentReference.model_validate(updated)
    assert (updated["meta"]["versionId"], response.headers["etag"]) == ("2", 'W/"2"')
    assert current(gateway, two_letters[0]) == updated  # the read shows the version the update answered
    by_type = gateway.find(type="http://snomed.info/sct|371526002").json()
    assert [e["resource"]["id"] for e in by_type["entry"]] == [two_letters[0]]
    assert gateway.find(type="http://snomed.info/sct|373942005").json()["total"] == 0
    versions = gateway.services.metadata.versions.history(two_letters[0])
    assert [(v.version, v.description, v.type_code.code) for v in versions] == [
        (1, None, "373942005"), (2, "Corrected letter", "371526002")]
    assert updates(gateway) == [("CH-MHD-1", "ATC_DOC_UPDATE", "0", "HCP", "7601000000002", "NORM", SPID)]


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["masterIdentifier"].update(value="urn:oid:1.2.3.999"), (422, "processing", "XDSMetadataIdentifierError")),
    (lambda d: d["subject"]["identifier"].update(value=OTHER_SPID),
     (422, "processing", "XDSPatientIDReconciliationError")),
    (lambda d: d["extension"][0]["valueCoding"].update(code="PAT"), (422, "processing", "UnmodifiableMetadataError")),
    (lambda d: d["content"][0]["attachment"].update(hash="AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
     (422, "processing", "UnmodifiableMetadataError")),
    (lambda d: d["content"][0]["attachment"].update(size=1), (422, "processing", "UnmodifiableMetadataError")),
    (lambda d: d.update(status="superseded"), (422, "processing", "UnmodifiableMetadataError")),
    (lambda d: d.pop("category"), (422, "business-rule", None)),
    (lambda d: d["securityLabel"][0]["coding"][0].update(code="263856008"), (403, "forbidden", None)),
    (lambda d: d.update(id="another-id"), (400, "invalid", None)),
], ids=["masterIdentifier", "patient", "originalProviderRole", "hash", "size", "status", "no category",
        "hcp changes confidentiality", "id differs from URL"])
def test_a_refused_update_answers_the_igs_error_and_changes_nothing(gateway, two_letters, change, expected):
    letter = current(gateway, two_letters[0])
    changed = copy.deepcopy(letter)
    change(changed)
    before = row_counts(gateway.runtime)

    response = put(gateway, changed, entry_id=two_letters[0])

    assert error(response) == expected
    assert row_counts(gateway.runtime) == before
    assert current(gateway, two_letters[0]) == letter
    assert [record[:3] for record in updates(gateway)] == [("CH-MHD-1", None, "4")]


def test_an_unknown_document_and_one_the_principal_may_not_read_answer_alike(gateway, two_letters):
    letter = current(gateway, two_letters[0])
    other_patient = gateway.tokens.headers(gateway.tokens.patient(OTHER_SPID))
    unknown = put(gateway, letter | {"id": "no-such-entry"})
    unreadable = put(gateway, letter, headers=other_patient)
    assert error(unknown) == error(unreadable) == (404, "processing", "XDSMetadataIdentifierError")
    assert unreadable.json()["issue"][0]["diagnostics"] == f"DocumentReference/{two_letters[0]} is not known"


def test_the_patient_changes_confidentiality_over_fhir_and_the_professional_loses_the_document(gateway, two_letters):
    patient = gateway.tokens.headers(gateway.tokens.patient())
    letter = current(gateway, two_letters[0], headers=patient)
    letter["securityLabel"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "1141000195107",
                                            "display": "Secret (qualifier value)"}]}]
    assert put(gateway, letter, headers=patient).status_code == 200
    assert gateway.client.get(f"/fhir/DocumentReference/{two_letters[0]}", headers=gateway.as_hcp()).status_code == 404
    assert [e["resource"]["id"] for e in gateway.find().json()["entry"]] == [two_letters[1]]
    letter["description"] = "the patient may not describe a professional's document"
    assert error(put(gateway, letter, headers=patient))[0] == 403


def test_the_document_administrator_deletes_and_the_document_leaves_searches_but_not_the_audit(gateway, two_letters):
    letter = current(gateway, two_letters[0])
    letter["extension"].append({"url": EXT_DELETION, "valueCoding": {"system": DELETION_SYSTEM, "code": REQUESTED}})

    response = put(gateway, letter, headers=dadm(gateway))

    assert response.status_code == 200, response.text
    assert [e["resource"]["id"] for e in gateway.find().json()["entry"]] == [two_letters[1]]
    assert gateway.client.get(f"/fhir/DocumentReference/{two_letters[0]}", headers=gateway.as_hcp()).status_code == 410
    assert gateway.client.get(f"/fhir/Binary/{two_letters[0]}", headers=gateway.as_hcp()).status_code == 404
    assert put(gateway, letter, headers=dadm(gateway)).status_code == 404  # deleted is gone for updates too
    assert [r[:5] for r in updates(gateway)] == [("CH-MHD-1", "ATC_DOC_DELETE", "0", "DADM", "dadm-1"),
                                                 ("CH-MHD-1", None, "4", "DADM", "dadm-1")]
    patient = gateway.tokens.headers(gateway.tokens.patient())
    trail = gateway.client.get("/fhir/AuditEvent", params={"entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"},
                               headers=patient).json()
    assert "ATC_DOC_DELETE" in [e["resource"]["subtype"][0]["code"] for e in trail["entry"]]


def deleted_letter(gateway, entry_id: str) -> dict:
    letter = current(gateway, entry_id)
    letter["extension"].append({"url": EXT_DELETION, "valueCoding": {"system": DELETION_SYSTEM, "code": REQUESTED}})
    response = put(gateway, letter, headers=dadm(gateway))
    assert response.status_code == 200, response.text
    return response.json()


def reads(gateway, path: str, headers: dict) -> list[tuple]:
    """(status, body) of GET, HEAD and the vread of version 1 of `path`."""
    answers = [gateway.client.get(path, headers=headers), gateway.client.head(path, headers=headers),
               gateway.client.get(f"{path}/_history/1", headers=headers)]
    return [(a.status_code, a.content and a.json()) for a in answers]


def test_a_deleted_document_is_gone_to_whom_could_read_it_and_unknown_to_anyone_else(gateway, two_letters):
    deleted = deleted_letter(gateway, two_letters[0])
    path = f"/fhir/DocumentReference/{two_letters[0]}"
    patient = gateway.tokens.headers(gateway.tokens.patient())
    stranger = gateway.tokens.headers(gateway.tokens.hcp(gln="7601000000019"))
    before = len(ledger(gateway))

    gone = f"DocumentReference/{two_letters[0]} was deleted (version {deleted['meta']['versionId']})"
    for headers in (gateway.as_hcp(), patient, dadm(gateway)):
        answers = reads(gateway, path, headers)
        assert [status for status, _ in answers] == [410, 410, 410], answers
        for _, body in (answers[0], answers[2]):
            assert body["resourceType"] == "OperationOutcome"
            assert (body["issue"][0]["code"], body["issue"][0]["diagnostics"]) == ("deleted", gone)

    unknown = reads(gateway, "/fhir/DocumentReference/no-such-entry", stranger)
    refused = reads(gateway, path, stranger)
    other_patient = reads(gateway, path, gateway.tokens.headers(gateway.tokens.patient(OTHER_SPID)))
    assert [s for s, _ in refused] == [s for s, _ in unknown] == [s for s, _ in other_patient] == [404, 404, 404]
    assert [b and b["issue"][0]["code"] for _, b in refused] == [b and b["issue"][0]["code"] for _, b in unknown]
    assert refused[0][1]["issue"][0]["diagnostics"] == f"DocumentReference/{two_letters[0]} is not known"

    # Each read is audited in the patient's trail, the gone (to whom could read) as the refused.
    reads_recorded = [r for r in ledger(gateway)[before:] if r[0] == "ITI-67"]
    assert [r[1:5] for r in reads_recorded if r[6] == SPID] == (
        [("ATC_DOC_SEARCH", "4", "HCP", "7601000000002")] * 3 + [("ATC_DOC_SEARCH", "4", "PAT", SPID)] * 3
        + [("ATC_DOC_SEARCH", "4", "DADM", "dadm-1")] * 3 + [("ATC_DOC_SEARCH", "4", "HCP", "7601000000019")] * 3
        + [("ATC_DOC_SEARCH", "4", "PAT", OTHER_SPID)] * 3)  # a metadata read: CH:ATC's document search


def test_a_bundle_of_updates_is_stored_whole_or_not_at_all(gateway, two_letters):
    letter, lab = current(gateway, two_letters[0]), current(gateway, two_letters[1])
    letter["description"], lab["description"] = "first", "second"
    broken = copy.deepcopy(lab)
    broken["masterIdentifier"]["value"] = "urn:oid:1.2.3.999"
    before = row_counts(gateway.runtime)

    refused = gateway.provide(update_bundle(letter, broken))
    assert error(refused) == (422, "processing", "XDSMetadataIdentifierError")
    assert row_counts(gateway.runtime) == before

    accepted = gateway.provide(update_bundle(letter, lab))
    assert accepted.status_code == 200, accepted.text
    answer = accepted.json()
    Bundle.model_validate(answer)
    assert answer["type"] == "transaction-response"
    assert [e["response"]["location"].split("/fhir/")[1] for e in answer["entry"]] == [
        f"DocumentReference/{two_letters[0]}/_history/2", f"DocumentReference/{two_letters[1]}/_history/2"]
    assert [current(gateway, i)["description"] for i in two_letters] == ["first", "second"]
