"""The provide seam (issue 23 item 1): every path that stores documents — ITI-65 (a batch of one), the
HL7 v2 bridge over MLLP, the XDM migration — goes through one transaction in which its participants
(`record_changes.RecordChanges`) are told what was stored, in its stored form; the CH:MHD-1 door
tells its own participants of every new metadata version. A participant runs inside the transaction
(it sees the new rows, nobody else does yet) and a failing one rolls the whole change back."""

from __future__ import annotations

import uuid

import orjson
import pytest
from sqlalchemy import func, select, text
from starlette.testclient import TestClient

from adapters.cara.store.schema import document_entry
from conftest import HCP_GLN, SPID, running_gateway
from functional.helpers import document_ids, row_counts
from functional.mllp_helpers import MllpClient, ack_fields, mdm, running_listener, senders_file
from functional.test_audit_exchanges import ledger
from functional.test_relabelled_documents import KINDS, migrate, reader, version_two, xdm_media
from gateway.samples import new_oid_unique_id, pdf_document, provide_bundle


@pytest.fixture
def record(tmp_path, database_url):
    with running_gateway(tmp_path, database_url, mllp_senders=senders_file(tmp_path)) as gateway:
        gateway.register_patient(grant_hcp="restricted")
        yield gateway


class Seen:
    """A participant that records what it was told and what its connection and another one see."""

    def __init__(self, engine, *, fail: bool = False):
        self.engine = engine
        self.fail = fail
        self.calls: list[tuple] = []

    def stored(self, connection, submissions) -> None:
        ids = [d.entry.entry_id for s in submissions for d in s.documents]
        self.calls.append(("stored", list(submissions), self._rows(connection, ids), self._outside(ids)))
        if self.fail:
            raise RuntimeError("the outbox cannot be written")

    def changed(self, connection, entries) -> None:
        versions = [connection.execute(select(document_entry.c.version).where(
            document_entry.c.id == e.stored.entry_id)).scalar_one() for e in entries]
        self.calls.append(("changed", list(entries), versions, None))
        if self.fail:
            raise RuntimeError("the outbox cannot be written")

    @staticmethod
    def _rows(connection, ids: list[str]) -> int:
        return connection.execute(select(func.count()).select_from(document_entry)
                                  .where(document_entry.c.id.in_(ids))).scalar_one()

    def _outside(self, ids: list[str]) -> int:
        """What a connection outside the transaction sees of the same rows (nothing: not committed)."""
        with self.engine.connect() as other:
            return self._rows(other, ids)


def answering(gateway) -> TestClient:
    """A client that gets the gateway's 500 answer where the default test client re-raises the error."""
    return TestClient(gateway.client.app, base_url="https://testserver", raise_server_exceptions=False)


def listening(gateway, *, fail: bool = False) -> Seen:
    seen = Seen(gateway.runtime.engine, fail=fail)
    gateway.services.exchange.changes.on_documents_stored(seen.stored)
    gateway.services.metadata.changes.on_metadata_changed(seen.changed)
    return seen


def test_one_set_of_participants_for_documents_and_metadata(record):
    assert record.services.exchange.changes is record.services.metadata.changes


def test_iti65_tells_its_participants_what_it_stored_inside_the_transaction(record):
    gateway = record
    original = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["v1"])}])).json())[0]
    seen = listening(gateway)
    content = pdf_document("Letter", ["v2"])
    bundle = provide_bundle(spid=SPID, documents=[{"title": "Letter v2", "replaces": original, "content": content,
                                                   "confidentiality": "restricted"}])

    response = gateway.provide(bundle)
    again = gateway.provide(bundle)  # the same Bundle again: found, not stored, nobody told

    assert (response.status_code, again.status_code) == (200, 200), response.text
    [(what, [submission], inside, outside)] = seen.calls
    [document] = submission.documents
    entry_id = document_ids(response.json())[0]
    pid = gateway.services.exchange.patients.pid_for_spid(SPID)
    assert (what, inside, outside) == ("stored", 1, 0)
    assert (submission.spid, submission.submission_set.patient_pid, submission.principal.user_id) == (SPID, pid, HCP_GLN)
    assert (document.entry.entry_id, document.entry.patient_pid, document.content) == (entry_id, pid, content)
    assert [(r.code, r.target_entry_id) for r in document.entry.relations] == [("replaces", original)]
    assert document.entry.submission_set_id == submission.submission_set.submission_set_id
    assert (document.entry.confidentiality_level, document.entry.submitter.user_id) == ("restricted", HCP_GLN)
    assert document.entry == gateway.services.exchange.documents.get_entry(entry_id)  # what a reader opens


def test_the_bridge_and_the_migration_tell_the_same_participants(record, tmp_path):
    gateway = record
    seen = listening(gateway)
    with running_listener(gateway.runtime) as address:
        client = MllpClient(address)
        ack = client.send(mdm(control_id="S1", unique_id=new_oid_unique_id(), content=b"%PDF-1.4 bridged").encode())
        client.close()
    migrated = {"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": new_oid_unique_id(),
                "content": pdf_document("Rapport", ["migrated"])}
    [row] = migrate(gateway.runtime, [xdm_media(tmp_path / "media-1", [migrated])]).values()

    assert ack_fields(ack)["MSA"][1] == "AA" and row.outcome == "migrated"
    told = [(s.principal.user_id, d.content, inside, outside)
            for what, submissions, inside, outside in seen.calls for s in submissions for d in s.documents]
    assert told == [("hopital-sion-feed", b"%PDF-1.4 bridged", 1, 0),
                    ("infomed-migration", migrated["content"], 1, 0)]


def test_a_failing_participant_leaves_nothing_stored_on_any_path(record, tmp_path):
    gateway = record
    listening(gateway, fail=True)
    counts = row_counts(gateway.runtime)
    records = len(ledger(gateway))

    response = answering(gateway).post("/fhir", headers=gateway.as_hcp(), content=orjson.dumps(provide_bundle(
        spid=SPID, documents=[{"title": "Letter", "content": pdf_document("Letter", ["lost?"])}])))
    with running_listener(gateway.runtime) as address:
        client = MllpClient(address)
        ack = client.send(mdm(control_id="F1", unique_id=new_oid_unique_id()).encode())
        client.close()
    migrated = {"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": new_oid_unique_id(),
                "content": pdf_document("Rapport", ["x"])}
    # A participant that raises is the gateway's own fault (not the document's content, not a dependency):
    # the migration keeps the document sealed in its holding area (`migrate retry` takes it once fixed).
    [row] = migrate(gateway.runtime, [xdm_media(tmp_path / "media-1", [migrated])]).values()

    assert response.status_code == 500
    assert ack_fields(ack)["MSA"][1] == "AR"  # "send it again": the gateway failed, not the message
    assert (row.outcome, row.reason_code) == ("held", "error") and "migrate retry" in row.reason
    after = row_counts(gateway.runtime)
    assert {t: n for t, n in after.items() if not t.startswith("migration_")} == \
        {t: n for t, n in counts.items() if not t.startswith("migration_")}  # no document, no kept answer
    creates = [r for r in ledger(gateway)[records:] if r[1] == "ATC_DOC_CREATE"]
    assert creates == []


def test_a_participant_whose_store_is_down_stops_the_migration(record, tmp_path, monkeypatch):
    """A dependency failure inside the transaction (the outbox's database) stops the run: nothing is
    journaled, and the same command resumes it."""
    from sqlalchemy.exc import OperationalError

    gateway = record
    counts = row_counts(gateway.runtime)

    def down(connection, submissions):
        raise OperationalError("INSERT INTO community_delivery", {}, ConnectionError("the database went away"))

    gateway.services.exchange.changes.on_documents_stored(down)
    migrated = {"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": new_oid_unique_id(),
                "content": pdf_document("Rapport", ["x"])}
    with pytest.raises(OperationalError):
        migrate(gateway.runtime, [xdm_media(tmp_path / "media-1", [migrated])])
    assert row_counts(gateway.runtime) == counts


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_changes_tell_their_participants_inside_the_transaction(record, kind):
    gateway = record
    response = gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["m"])}]))
    entry_id = document_ids(response.json())[0]
    seen = listening(gateway)

    version_two(gateway, entry_id, kind)

    [(what, [change], versions, _)] = seen.calls
    assert (what, versions) == ("changed", [2])  # the new version's row, seen inside the transaction
    assert (change.previous.version, change.stored.version, change.spid) == (1, 2, SPID)
    assert change.stored.status == ("deleted" if kind == "delete" else "current")
    assert change.stored.entry_id == change.previous.entry_id == entry_id


def test_a_failing_metadata_participant_rolls_the_change_back(record):
    gateway = record
    response = gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["m"])}]))
    entry_id = document_ids(response.json())[0]
    listening(gateway, fail=True)
    letter = reader(gateway, entry_id, gateway.as_hcp())
    letter["description"] = "never stored"

    update = answering(gateway).put(f"/fhir/DocumentReference/{entry_id}", content=orjson.dumps(letter),
                                    headers=gateway.as_hcp())

    assert update.status_code == 500
    after = reader(gateway, entry_id, gateway.as_hcp())
    assert (after["meta"]["versionId"], after.get("description")) == ("1", None)
    with gateway.runtime.engine.connect() as connection:
        kept = connection.execute(text("SELECT count(*) FROM document_entry_version")).scalar_one()
    assert kept == 0
