"""Every answer of the community (the strict stub, over mutual TLS) gives its outcome on the outbox row
(issue 24 "What must show"): success; the consent filter's refusal → the next higher level, each step
recorded; an unknown code → failed with the community's code; a duplicate submission set (a lost
answer) → delivered; a duplicate document under another submission set → failed with both ids; a
SOAP fault, HTTP 500, a reset, a slow answer → retried; a patient the community does not know →
waiting, then delivered. Each attempt is in the ledger (ITI-41, the gateway as source) and its ATNA
messages reach the community's repository and pass its strict checks."""

from __future__ import annotations

import json

import pytest

from adapters.community.xds_table import document_unique_id
from conftest import HCP_GLN, SPID
from functional.delivery_helpers import MPI_PID, delivering_world, stub_patient

SNOMED = "2.16.840.1.113883.6.96"


def test_a_document_reaches_the_community_once_with_its_receipt_its_ledger_record_and_atna(tmp_path, database_url):
    with delivering_world(tmp_path, database_url) as world:
        [entry_id] = world.provide({"title": "Discharge letter"})
        assert world.states() == [("cara", "provide", "pending")]

        world.settle()

        [row] = world.rows()
        [stored] = world.stub.stored
        entry = world.gateway.services.exchange.documents.get_entry(entry_id)
        assert (row["state"], row["attempts"], row["community_patient_id"]) == ("delivered", 1, MPI_PID)
        assert (stored.unique_id, stored.entry_uuid, stored.submission_set_unique_id, stored.patient_id,
                stored.status) == (document_unique_id(entry.unique_id), row["entry_uuid"],
                                   row["submission_set_unique_id"], MPI_PID, "Approved")
        assert (stored.hash, stored.size) == (entry.sha1, entry.size)
        receipt = world.receipt(row["id"])
        assert {k: receipt[k] for k in ("outcome", "submission_set_unique_id", "entry_uuids", "confidentiality",
                                        "community_patient_id", "version")} == {
            "outcome": "delivered", "submission_set_unique_id": row["submission_set_unique_id"],
            "entry_uuids": [row["entry_uuid"]], "confidentiality": "normal", "community_patient_id": MPI_PID,
            "version": 1}
        assert world.outcomes(row["id"]) == [("delivered", "normal")]
        counts = world.stub.counts()
        assert (counts["requests_pix"], counts["requests_sts"], counts["requests_iti41"]) == (1, 1, 1)

        [event] = world.ledger_deliveries()
        destination = next(a for a in event["agent"] if a["type"]["coding"][0]["code"] == "110152")
        technical_user = next(a for a in event["agent"] if a.get("altId") == world.stub.technical_user_oid)
        assert (event["outcome"], event["type"]["code"]) == ("0", "110106")
        assert (destination["network"]["address"], destination["who"]["display"]) == (world.stub.iti41_url, "cara")
        assert [c["code"] for r in technical_user["role"] for c in r["coding"]] == ["TCU"]
        assert {e["what"]["identifier"]["value"] for e in event["entity"]} == {
            SPID, document_unique_id(entry.unique_id), f"urn:oid:{row['submission_set_unique_id']}"}
        assert world.ledger_ok()

        accepted = world.stub.audit.wait_for(3)
        assert world.stub.audit.rejected == []
        assert sorted(m.check.event_type for m in accepted) == ["ITI-40", "ITI-41", "ITI-45"]


@pytest.mark.parametrize(("level", "platform", "steps"), [
    ("restricted", "emedo", ["normal", "restricted"]),
    ("restricted", "former", ["normal", "restricted"]),
    ("secret", "emedo", ["normal", "restricted", "secret"]),
])
def test_the_consent_filter_raises_the_level_one_step_at_a_time_each_recorded(tmp_path, database_url, level,
                                                                              platform, steps):
    # The record here: provide level normal; the community's patient: `level` (set in the community).
    with delivering_world(tmp_path, database_url, patients=[stub_patient(level)]) as world:
        world.stub.consent_error = platform
        world.provide({"title": "Report"})

        world.settle()

        [row] = world.rows()
        assert world.outcomes(row["id"]) == [("raise-confidentiality", s) for s in steps[:-1]] + [("delivered",
                                                                                                   steps[-1])]
        assert (row["state"], row["confidentiality"]) == ("delivered", steps[-1])
        assert [(world.stub.stored[0].confidentiality, len(world.stub.stored))] == [(CODES[steps[-1]], 1)]
        assert [e["outcome"] for e in world.ledger_deliveries()] == ["4"] * (len(steps) - 1) + ["0"]
        refused = world.attempts(row["id"])[0]
        assert (refused["code"], EXPECTED_TEXT[platform] in refused["text"]) == (EXPECTED_CODE[platform], True)
        assert world.ledger_ok()


CODES = {"normal": "17621005", "restricted": "263856008", "secret": "1141000195107"}
EXPECTED_CODE = {"emedo": "XDSRepositoryError", "former": "XDSRegistryError"}
EXPECTED_TEXT = {"emedo": "Consent filter applied", "former": "Unexpected registry error"}


def test_a_code_the_affinity_domain_lacks_fails_with_the_communitys_code_and_text(tmp_path, database_url):
    with delivering_world(tmp_path, database_url) as world:
        world.stub.codes.remove("typeCode", "373942005", SNOMED)  # the sample's Discharge summary
        world.provide({"title": "Discharge summary"})

        world.settle()

        [row] = world.rows()
        assert (row["state"], row["last_code"]) == ("failed", "XDSRegistryMetadataError")
        assert "373942005" in row["last_text"] and "Affinity Domain" in row["last_text"]
        assert world.outcomes(row["id"]) == [("rejected", "normal")]
        answer = json.loads(world.attempts(row["id"])[0]["answer"])
        assert [e["code"] for e in answer["registry_errors"]] == ["XDSRegistryMetadataError"]
        assert (world.stub.stored, [e["outcome"] for e in world.ledger_deliveries()]) == ([], ["4"])


def test_a_lost_answer_is_sent_again_with_the_same_ids_and_the_duplicate_set_means_delivered(tmp_path, database_url):
    with delivering_world(tmp_path, database_url) as world:
        world.stub.scenarios.next("iti41", "lost")  # stored by the community, the answer never arrives
        world.provide({"title": "Letter"})

        world.settle()

        [row] = world.rows()
        sent = world.stub.requests_to("iti41")
        assert world.outcomes(row["id"]) == [("transport", "normal"), ("already-delivered", "normal")]
        assert (row["state"], world.receipt(row["id"])["outcome"]) == ("delivered", "already-delivered")
        assert [(d.submission_set_unique_id, d.entry_uuid) for d in world.stub.stored] == [
            (row["submission_set_unique_id"], row["entry_uuid"])]
        assert len(sent) == 2 and all(row["submission_set_unique_id"].encode() in r.body for r in sent)
        assert world.ledger_ok()


def test_a_document_the_community_holds_under_another_submission_set_fails_naming_both(tmp_path, database_url):
    # The same community configured twice: the second delivery of the document is another submission.
    with delivering_world(tmp_path, database_url, community_ids=("cara", "cara-again")) as world:
        [entry_id] = world.provide({"title": "Letter"})

        world.settle()

        rows = {r["community"]: r for r in world.rows()}
        delivered = next(r for r in rows.values() if r["state"] == "delivered")
        refused = next(r for r in rows.values() if r["state"] == "failed")
        unique_id = document_unique_id(world.gateway.services.exchange.documents.get_entry(entry_id).unique_id)
        assert refused["last_code"] == "XDSDuplicateUniqueIdInRegistry"
        assert all(name in refused["last_text"] for name in (unique_id, delivered["submission_set_unique_id"],
                                                              refused["submission_set_unique_id"]))
        assert [d.submission_set_unique_id for d in world.stub.stored] == [delivered["submission_set_unique_id"]]
        assert world.outcomes(refused["id"]) == [("conflict", "normal")]


@pytest.mark.parametrize(("endpoint", "kind", "params"), [
    ("iti41", "soap_fault", {}),
    ("iti41", "http_error", {"status": 500}),
    ("iti41", "http_error", {"status": 503}),
    ("iti41", "reset", {}),
    ("iti41", "reset", {"process": True}),
    ("iti41", "slow", {"delay": 1.5}),  # past the community's timeout: processed, answer too late
    ("sts", "soap_fault", {}),
    ("sts", "reset", {}),
    ("pix", "http_error", {"status": 500}),
    ("pix", "slow", {"delay": 1.5}),
])
def test_transport_failures_are_retried_and_the_document_lands_once(tmp_path, database_url, endpoint, kind, params):
    with delivering_world(tmp_path, database_url, config={"timeout_seconds": 1}) as world:
        world.stub.scenarios.next(endpoint, kind, count=2, **params)
        world.provide({"title": "Letter"})

        world.settle()

        [row] = world.rows()
        outcomes = [o for o, _ in world.outcomes(row["id"])]
        assert row["state"] == "delivered"
        assert outcomes[:2] == ["transport", "transport"] and outcomes[2] in ("delivered", "already-delivered")
        assert len(outcomes) == 3
        assert [d.entry_uuid for d in world.stub.stored] == [row["entry_uuid"]]
        assert [e["outcome"] for e in world.ledger_deliveries()] == ["8", "8", "0"]
        assert world.ledger_ok()


@pytest.mark.parametrize("answer", ["AE", "NF"])
def test_a_patient_the_community_does_not_know_waits_then_is_delivered_under_its_mpi_pid(tmp_path, database_url,
                                                                                        answer):
    with delivering_world(tmp_path, database_url, patients=[]) as world:
        world.stub.pix_not_found = answer
        world.provide({"title": "Letter"}, {"title": "Lab report"})  # two documents of the same patient

        world.settle(until=lambda: len(world.stub.requests_to("pix")) >= 3)

        first, second = world.rows()
        assert (first["state"], first["last_code"], second["state"]) == ("waiting-patient", "patient-unknown",
                                                                         "pending")  # held behind the first
        assert world.stub.requests_to("iti41") == [] and second["attempts"] == 0
        world.stub.add_patient(stub_patient())

        world.settle()

        assert [r["state"] for r in world.rows()] == ["delivered", "delivered"]
        assert [d.patient_id for d in world.stub.stored] == [MPI_PID, MPI_PID]
        assert [d.entry_uuid for d in world.stub.stored] == [first["entry_uuid"], second["entry_uuid"]]
