"""What the deliverer decides before and around the community's answer: per-patient order (a replacement
only after its original is delivered, as an RPLC to the entryUUID the community holds), what is not
sent (a document deleted before delivery, a refusal of the patient's exclusion list), CH:MHD-1 changes
(carried when the document went after them, otherwise not supported, saying what to do), forward-only
(the bytes dropped once every community holds the document), the STS and PIX manager down for a while,
and the ATNA repository down for a while (queued, never blocking, then sent)."""

from __future__ import annotations

import pytest

from conftest import HCP_GLN, SPID
from functional.delivery_helpers import delivering_world
from functional.test_relabelled_documents import SECRET, version_two

SNOMED = "2.16.840.1.113883.6.96"


def test_a_replacement_goes_after_its_original_as_an_rplc_to_the_entry_uuid_the_community_holds(tmp_path,
                                                                                                 database_url):
    with delivering_world(tmp_path, database_url) as world:
        [original] = world.provide({"title": "Letter v1"})
        [replacement] = world.provide({"title": "Letter v2", "replaces": original})
        first, second = world.rows()
        assert [(r["kind"], r["depends_on"]) for r in (first, second)] == [("provide", None), ("replace", first["id"])]

        world.settle()

        assert [r["state"] for r in world.rows()] == ["delivered", "delivered"]
        held, replacing = world.stub.stored
        assert (held.entry_uuid, held.status) == (first["entry_uuid"], "Deprecated")
        assert (replacing.entry_uuid, replacing.replaces) == (second["entry_uuid"], first["entry_uuid"])


def test_a_replacement_waits_for_its_failed_original_until_an_operator_retries_it(tmp_path, database_url):
    with delivering_world(tmp_path, database_url) as world:
        world.stub.codes.remove("classCode", "371531000", SNOMED)
        [original] = world.provide({"title": "Letter v1"})
        world.provide({"title": "Letter v2", "replaces": original, "class_code": "2171000195109",
                       "class_display": "Obstetrical record"})
        [other] = world.provide({"title": "Unrelated", "class_code": "2171000195109",
                                 "class_display": "Obstetrical record"})
        world.settle(until=lambda: world.rows()[0]["state"] == "failed")

        assert [r["state"] for r in world.rows()] == ["failed", "pending", "pending"]  # the patient's order holds
        assert world.stub.stored == []
        world.stub.codes.add("classCode", "371531000", SNOMED)
        assert world.runtime.delivery.retry(failed=True) == 1

        world.settle()

        assert [r["state"] for r in world.rows()] == ["delivered", "delivered", "delivered"]
        assert [d.entry_uuid for d in world.stub.stored] == [r["entry_uuid"] for r in world.rows()]


def test_a_document_deleted_before_its_delivery_is_withdrawn_and_nothing_is_sent(tmp_path, database_url):
    with delivering_world(tmp_path, database_url) as world:
        [entry_id] = world.provide({"title": "Letter"})
        version_two(world.gateway, entry_id, "delete")

        world.settle()

        assert world.states() == [("cara", "provide", "withdrawn"), ("cara", "delete", "withdrawn")]
        assert world.stub.counts()["requests_iti41"] == 0 and world.stub.requests == []
        assert [e["outcome"] for e in world.ledger_deliveries()] == ["4", "4"]
        assert "before it was delivered" in world.rows()[0]["last_text"]


def test_the_patients_exclusion_list_naming_the_responsible_professional_refuses_the_delivery(tmp_path,
                                                                                            database_url):
    with delivering_world(tmp_path, database_url) as world:
        world.provide({"title": "Letter"})
        world.gateway.grant(SPID, HCP_GLN, "normal", rule="urn:e-health-suisse:2015:policies:exclusion-list")

        world.settle()

        [row] = world.rows()
        assert (row["state"], row["last_code"]) == ("failed", "gateway:access-refused")
        assert HCP_GLN in row["last_text"]
        assert world.stub.requests == []
        [event] = world.ledger_deliveries()
        assert (event["outcome"], "gateway:access-refused" in event["outcomeDesc"]) == ("4", True)


def test_a_change_before_delivery_travels_with_the_document_one_after_is_not_supported(tmp_path, database_url):
    with delivering_world(tmp_path, database_url) as world:
        [early, late] = world.provide({"title": "Early"}, {"title": "Late"})
        version_two(world.gateway, early, "relabel")  # before delivery: sent restricted, as version 2

        world.settle()
        version_two(world.gateway, late, "edit")  # after delivery: cara takes provides only from this user
        world.settle()

        rows = world.rows()
        assert [(r["kind"], r["state"]) for r in rows] == [("provide", "delivered"), ("provide", "delivered"),
                                                             ("update", "delivered"), ("update", "not-supported")]
        assert (world.receipt(rows[0]["id"])["version"], world.receipt(rows[0]["id"])["confidentiality"]) == (
            2, "restricted")
        assert world.receipt(rows[2]["id"]) == {"carried_by": rows[0]["id"], "outcome": "carried", "version": 2}
        assert "document administrator" in rows[3]["last_text"] and rows[1]["entry_uuid"] in rows[3]["last_text"]
        assert [d.confidentiality for d in world.stub.stored] == ["263856008", "17621005"]
        assert world.stub.counts()["requests_iti41"] == 2


def test_forward_only_drops_the_bytes_once_every_community_holds_the_document(tmp_path, database_url):
    with delivering_world(tmp_path, database_url, community_ids=("cara", "other"), delivery="forward-only") as world:
        # The same stub as two communities: the second refuses the duplicate until it is asked again.
        [entry_id] = world.provide({"title": "Letter"})
        hcp = world.gateway.as_hcp()

        world.settle()
        rows = {r["community"]: r for r in world.rows()}
        assert sorted(r["state"] for r in rows.values()) == ["delivered", "failed"]
        kept = world.gateway.client.get(f"/fhir/Binary/{entry_id}", headers=hcp)
        assert kept.status_code == 200  # one community lacks it: the bytes stay

        world.stub.registry.documents.clear()  # (the community's document administrator removed it there)
        world.stub.registry.submission_sets.clear()
        world.runtime.delivery.retry(failed=True)
        world.settle()

        gone = world.gateway.client.get(f"/fhir/Binary/{entry_id}", headers=hcp)
        metadata = world.gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=hcp)
        assert sorted(r["state"] for r in world.rows()) == ["delivered", "delivered"]
        assert (gone.status_code, metadata.status_code) == (410, 200)
        assert "forward-only" in gone.json()["issue"][0]["diagnostics"]
        assert "cara" in gone.json()["issue"][0]["diagnostics"]
        assert world.ledger_ok()


@pytest.mark.parametrize("endpoints", [("sts",), ("pix",), ("sts", "pix")])
def test_the_sts_and_pix_manager_down_for_a_while_then_back_everything_is_delivered_once(tmp_path, database_url,
                                                                                      endpoints):
    with delivering_world(tmp_path, database_url) as world:
        for endpoint in endpoints:
            world.stub.scenarios.always(endpoint, "http_error", status=503)
        world.provide(*({"title": f"Letter {n}"} for n in range(4)))

        world.settle(until=lambda: world.rows()[0]["attempts"] >= 3)
        assert world.stub.requests_to("iti41") == []
        world.stub.scenarios.clear()
        world.settle()

        rows = world.rows()
        assert [r["state"] for r in rows] == ["delivered"] * 4
        assert [d.entry_uuid for d in world.stub.stored] == [r["entry_uuid"] for r in rows]  # in order, once each
        assert len(world.stub.requests_to("iti41")) == 4
        assert world.ledger_ok()


def test_the_atna_repository_down_queues_the_messages_deliveries_go_on_then_every_message_arrives(tmp_path,
                                                                                                  database_url):
    with delivering_world(tmp_path, database_url) as world:
        world.stub.stop_audit()
        world.provide({"title": "Letter 1"}, {"title": "Letter 2"})

        world.settle()
        assert [r["state"] for r in world.rows()] == ["delivered", "delivered"]
        queued = world.runtime.delivery.status()[1]
        assert queued == {"cara": 4}  # PIX + STS + ITI-41, then ITI-41 (the patient and assertion cached)
        world.stub.start_audit()
        world.settle(until=lambda: not world.runtime.delivery.status()[1])

        accepted = world.stub.audit.wait_for(4)
        assert sorted(m.check.event_type for m in accepted) == ["ITI-40", "ITI-41", "ITI-41", "ITI-45"]
        assert world.stub.audit.rejected == []
