"""Existence oracles (issue 22 item 15, the ITI-65 and PIXm cases): an answer must not differ between
something this caller may not see and something that does not exist.

- A uniqueId already in the record: resubmitting it with the same bytes used to answer the existing
  entry's id (200) to anyone, and other bytes a 409 "with other content" — so a submitter who may not
  read the entry learned that it exists, its id, and whether a guess of its bytes was right. The
  uniqueId cannot be stored twice, so such a submitter gets one refusal (409) whatever the entry holds
  and whoever's it is; the idempotent answer stays for whom may name the entry (read it, or submitted
  it). The same rule on every face: ITI-65, HL7 v2 over MLLP, the XDM migration.
- PIXm (and the Patient read) with a token bound to another patient answered 403 for a known
  identifier and 404 for an unknown one: now the 404 of the unknown one.
"""

from __future__ import annotations

import uuid

import pytest

from conftest import LOCAL_SYSTEM, OTHER_SPID, SPID, running_gateway
from functional.helpers import document_ids, row_counts
from functional.mllp_helpers import MllpClient, ack_fields, mdm, running_listener, senders_file
from functional.test_relabelled_documents import migrate, xdm_media
from gateway.samples import new_oid_unique_id, pdf_document, provide_bundle

SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"


@pytest.fixture
def record(tmp_path, database_url):
    """The test patient (granting the test HCP restricted) with a secret document of their own, and
    another patient with a normal document of theirs."""
    with running_gateway(tmp_path, database_url, mllp_senders=senders_file(tmp_path)) as gateway:
        gateway.register_patient(grant_hcp="restricted")
        gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul", grant_hcp=None)
        patient = gateway.tokens.headers(gateway.tokens.patient())
        secret = {"unique_id": new_oid_unique_id(), "content": pdf_document("Secret", ["s"])}
        response = gateway.provide(provide_bundle(spid=SPID, author_role="PAT", documents=[
            {"title": "Secret", "confidentiality": "secret", **secret}]), headers=patient)
        assert response.status_code == 200, response.text
        secret["entry_id"] = document_ids(response.json())[0]
        other = {"unique_id": new_oid_unique_id(), "content": pdf_document("Other", ["o"])}
        response = gateway.provide(provide_bundle(spid=OTHER_SPID, author_role="PAT", documents=[
            {"title": "Other", **other}]), headers=gateway.tokens.headers(gateway.tokens.patient(OTHER_SPID)))
        assert response.status_code == 200, response.text
        other["entry_id"] = document_ids(response.json())[0]
        yield gateway, secret, other


def resubmitted(gateway, unique_id: str, content: bytes):
    return gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "unique_id": unique_id, "content": content}]))


def test_iti65_a_uniqueid_the_submitter_may_not_see_is_one_refusal_whatever_it_holds(record):
    gateway, secret, other = record
    counts = row_counts(gateway.runtime)

    same_bytes = resubmitted(gateway, secret["unique_id"], secret["content"])
    other_bytes = resubmitted(gateway, secret["unique_id"], pdf_document("Guess", ["g"]))
    other_patient = resubmitted(gateway, other["unique_id"], other["content"])

    answers = {(r.status_code, r.text.replace(key, "KEY"))
               for r, key in ((same_bytes, secret["unique_id"]), (other_bytes, secret["unique_id"]),
                              (other_patient, other["unique_id"]))}
    assert len(answers) == 1, answers
    [(status, text)] = answers
    assert status == 409
    assert secret["entry_id"] not in same_bytes.text and other["entry_id"] not in other_patient.text
    assert same_bytes.json()["issue"][0]["expression"] == ["DocumentReference.masterIdentifier"]
    assert row_counts(gateway.runtime) == counts


def test_iti65_whom_may_name_the_entry_still_gets_the_idempotent_answer(record):
    gateway, secret, _ = record
    mine = {"unique_id": new_oid_unique_id(), "content": pdf_document("Mine", ["m"])}
    first = resubmitted(gateway, mine["unique_id"], mine["content"])
    counts = row_counts(gateway.runtime)

    again = resubmitted(gateway, mine["unique_id"], mine["content"])  # its submitter (and a reader)
    patient = gateway.tokens.headers(gateway.tokens.patient())
    owner = gateway.provide(provide_bundle(spid=SPID, author_role="PAT", documents=[
        {"title": "Secret", "confidentiality": "secret", **{k: secret[k] for k in ("unique_id", "content")}}]),
        headers=patient)

    assert (first.status_code, again.status_code, owner.status_code) == (200, 200, 200), again.text
    assert document_ids(again.json()) == document_ids(first.json())
    assert document_ids(owner.json()) == [secret["entry_id"]]
    assert row_counts(gateway.runtime) == counts


def test_hl7_a_uniqueid_the_sender_may_not_see_is_one_refusal_whatever_it_holds(record):
    gateway, secret, other = record
    counts = row_counts(gateway.runtime)
    with running_listener(gateway.runtime) as address:
        client = MllpClient(address)
        same_bytes = client.send(mdm(control_id="O1", unique_id=secret["unique_id"], content=secret["content"]).encode())
        other_bytes = client.send(mdm(control_id="O2", unique_id=secret["unique_id"], content=b"%PDF-1.4 guess").encode())
        other_patient = client.send(mdm(control_id="O3", unique_id=other["unique_id"], content=other["content"]).encode())
        client.close()

    def what(ack: bytes, key: str) -> tuple:
        fields = ack_fields(ack.replace(key.encode(), b"KEY"))
        return fields["MSA"][1], tuple(fields["MSA"][3:]), tuple(fields.get("ERR") or ())

    answers = {what(same_bytes, secret["unique_id"]), what(other_bytes, secret["unique_id"]),
               what(other_patient, other["unique_id"])}
    assert len(answers) == 1, answers
    assert next(iter(answers))[0] == "AE"
    assert {t: n for t, n in row_counts(gateway.runtime).items() if not t.startswith("mllp_")} == \
        {t: n for t, n in counts.items() if not t.startswith("mllp_")}


def test_xdm_a_uniqueid_the_migration_may_not_see_is_one_refusal_whatever_it_holds(record, tmp_path):
    gateway, secret, other = record
    counts = row_counts(gateway.runtime)
    documents = [{"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": secret["unique_id"],
                  "content": secret["content"]},
                 {"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": secret["unique_id"],
                  "content": pdf_document("Guess", ["g"])},
                 {"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": other["unique_id"],
                  "content": other["content"]}]
    rows = []
    for n, document in enumerate(documents):  # one media each: each is decided against the record alone
        rows += migrate(gateway.runtime, [xdm_media(tmp_path / f"media-{n}", [document])]).values()

    answers = {(r.outcome, r.reason_code, r.reason.replace(d["unique_id"], "KEY")) for r, d in zip(rows, documents)}
    assert len(answers) == 1, answers
    assert next(iter(answers))[:2] == ("rejected", "conflict")
    assert {t: n for t, n in row_counts(gateway.runtime).items() if not t.startswith("migration_")} == \
        {t: n for t, n in counts.items() if not t.startswith("migration_")}


# -- PIXm and the Patient read ----------------------------------------------------------------------

def test_a_token_bound_to_another_patient_gets_the_unknown_answer_for_a_known_identifier(record):
    gateway, _, _ = record
    bound = gateway.tokens.headers(gateway.tokens.hcp(spid=OTHER_SPID))  # extended token: the other patient
    pid = gateway.services.exchange.patients.pid_for_spid(SPID)

    def pix(source: str):
        response = gateway.client.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": source}, headers=bound)
        return response.status_code, response.text

    known, unknown = pix(f"{LOCAL_SYSTEM}|L-1"), pix(f"{LOCAL_SYSTEM}|L-404")
    by_spid, unknown_spid = pix(f"{SPID_SYSTEM}|{SPID}"), pix(f"{SPID_SYSTEM}|761337610400000001")
    read = gateway.client.get(f"/fhir/Patient/{pid}", headers=bound)
    unknown_read = gateway.client.get("/fhir/Patient/no-such-patient", headers=bound)

    assert known == unknown and by_spid == unknown_spid
    assert known[0] == 404
    assert (read.status_code, read.text.replace(pid, "KEY")) == (
        unknown_read.status_code, unknown_read.text.replace("no-such-patient", "KEY"))
    assert read.status_code == 404
    own = gateway.client.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{LOCAL_SYSTEM}|L-2"},
                             headers=bound)
    assert own.status_code == 200, own.text  # its own patient is still answered
