"""Every path that stores a document enqueues it (issue 24 item 1), in the same transaction: ITI-65,
the HL7 v2 bridge over a real MLLP socket, the XDM migration, and CH:MHD-1 changes (update, the
patient's relabelling, a document administrator's deletion) — exactly the rows expected, one per
configured community; an outbox that cannot be written fails the store on every path, nothing of
the documents left behind; with delivery off, or no community, no row is written."""

from __future__ import annotations

import uuid

import orjson
import pytest
from sqlalchemy import text

from conftest import SPID, running_gateway
from functional.delivery_helpers import FAST, delivering_world
from functional.helpers import row_counts
from functional.test_provide_seam import answering
from functional.mllp_helpers import MllpClient, ack_fields, mdm, running_listener, senders_file
from functional.test_relabelled_documents import migrate, version_two, xdm_media
from gateway.samples import new_oid_unique_id, pdf_document, provide_bundle

TWO = ("cara", "other")


def rows(world) -> list[tuple]:
    """(community, kind, unique id, version, the entry it depends on) of every row, in order."""
    by_id = {r["id"]: r for r in world.rows()}
    return [(r["community"], r["kind"], r["unique_id"], r["version"],
             by_id[r["depends_on"]]["entry_id"] if r["depends_on"] else None) for r in world.rows()]


def test_iti65_mllp_and_the_migration_each_enqueue_one_row_per_community(tmp_path, database_url):
    with delivering_world(tmp_path, database_url, community_ids=TWO, mllp_senders=senders_file(tmp_path)) as world:
        gateway = world.gateway
        [first] = world.provide({"title": "Letter"})
        first_uid = gateway.services.exchange.documents.get_entry(first).unique_id
        [second] = world.provide({"title": "Letter v2", "replaces": first})
        second_uid = gateway.services.exchange.documents.get_entry(second).unique_id
        bridged = new_oid_unique_id()
        with running_listener(gateway.runtime) as address:
            client = MllpClient(address)
            ack = client.send(mdm(control_id="D1", unique_id=bridged, content=b"%PDF-1.4 bridged").encode())
            client.close()
        migrated = new_oid_unique_id()
        [journal] = migrate(gateway.runtime, [xdm_media(tmp_path / "media-1", [
            {"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": migrated,
             "content": pdf_document("Rapport", ["migrated"])}])]).values()

        assert (ack_fields(ack)["MSA"][1], journal.outcome) == ("AA", "migrated")
        assert rows(world) == [(c, "provide", first_uid, 1, None) for c in TWO] + [
            (c, "replace", second_uid, 1, first) for c in TWO] + [
            (c, "provide", bridged, 1, None) for c in TWO] + [(c, "provide", migrated, 1, None) for c in TWO]
        assert {r["state"] for r in world.rows()} == {"pending"}


@pytest.mark.parametrize("kind", ["edit", "relabel", "delete"])
def test_a_metadata_change_enqueues_an_update_or_delete_row_depending_on_the_document(tmp_path, database_url, kind):
    with delivering_world(tmp_path, database_url, community_ids=TWO) as world:
        [entry_id] = world.provide({"title": "Letter"})
        unique_id = world.gateway.services.exchange.documents.get_entry(entry_id).unique_id

        version_two(world.gateway, entry_id, kind)

        expected = "delete" if kind == "delete" else "update"
        assert rows(world) == [(c, "provide", unique_id, 1, None) for c in TWO] + [
            (c, expected, unique_id, 2, entry_id) for c in TWO]


def test_documents_stored_before_the_communities_were_configured_get_no_rows_for_their_changes(tmp_path):
    url = f"sqlite:///{tmp_path / 'data' / 'gateway.sqlite3'}"
    with running_gateway(tmp_path, url) as gateway:  # no EPR_COMMUNITIES: its own record
        gateway.register_patient()
        response = gateway.provide(provide_bundle(spid=SPID, documents=[
            {"title": "Old", "content": pdf_document("Old", ["x"])}]))
        entry_id = response.json()["entry"][1]["response"]["location"].rsplit("/", 1)[1]
    with delivering_world(tmp_path, url, register=False) as world:
        version_two(world.gateway, entry_id, "edit")
        [new] = world.provide({"title": "New"})

        assert [(r["kind"], r["entry_id"]) for r in world.rows()] == [("provide", new)]


def _refusing_outbox(engine) -> None:
    """A real write failure of the outbox table (a trigger refusing every insert), nothing else changed."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("CREATE TRIGGER outbox_full BEFORE INSERT ON community_delivery "
                                    "BEGIN SELECT RAISE(ABORT, 'the outbox cannot be written'); END"))
        else:
            connection.execute(text("CREATE FUNCTION outbox_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                                    "RAISE EXCEPTION 'the outbox cannot be written'; END $$"))
            connection.execute(text("CREATE TRIGGER outbox_full BEFORE INSERT ON community_delivery "
                                    "FOR EACH ROW EXECUTE FUNCTION outbox_full()"))


def test_an_outbox_that_cannot_be_written_fails_the_store_on_every_path(tmp_path, database_url):
    with delivering_world(tmp_path, database_url, mllp_senders=senders_file(tmp_path)) as world:
        gateway = world.gateway
        _refusing_outbox(gateway.runtime.engine)
        before = row_counts(gateway.runtime)

        answer = answering(gateway).post("/fhir", content=orjson.dumps(provide_bundle(spid=SPID, documents=[
            {"title": "Letter", "content": pdf_document("Letter", ["lost?"])}])), headers=gateway.as_hcp())
        with running_listener(gateway.runtime) as address:
            client = MllpClient(address)
            ack = client.send(mdm(control_id="F1", unique_id=new_oid_unique_id()).encode())
            client.close()
        # The gateway's own failure (not the document's content, not a dependency): the migration keeps
        # the document sealed in its holding area, and `migrate retry` takes it once the outbox is fixed.
        [row] = migrate(gateway.runtime, [xdm_media(tmp_path / "media-1", [
            {"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": new_oid_unique_id(),
             "content": pdf_document("Rapport", ["x"])}])]).values()

        assert answer.status_code == 500
        assert ack_fields(ack)["MSA"][1] == "AR"  # "send it again"
        assert (row.outcome, row.reason_code) == ("held", "error") and "migrate retry" in row.reason
        after = row_counts(gateway.runtime)
        assert {t: n for t, n in after.items() if not t.startswith("migration_")} == \
            {t: n for t, n in before.items() if not t.startswith("migration_")}  # no document, no row, no answer


def test_with_delivery_off_nothing_is_enqueued_though_communities_are_configured(tmp_path, database_url):
    with delivering_world(tmp_path, database_url, delivery="off") as world:
        response = world.gateway.provide(provide_bundle(spid=SPID, documents=[
            {"title": "Letter", "content": pdf_document("Letter", ["kept here"])}]))

        assert response.status_code == 200
        assert (row_counts(world.runtime)["community_delivery"], world.runtime.delivery.communities) == (0, ())


def test_without_communities_the_gateway_is_its_own_record_and_enqueues_nothing(tmp_path, database_url):
    with running_gateway(tmp_path, database_url, **FAST) as gateway:
        gateway.register_patient()
        response = gateway.provide(provide_bundle(spid=SPID, documents=[
            {"title": "Letter", "content": pdf_document("Letter", ["kept here"])}]))

        assert response.status_code == 200
        assert (row_counts(gateway.runtime)["community_delivery"], gateway.runtime.delivery.communities) == (0, ())
