"""`RecordChanges` (gateway/exchanges/record_changes.py): who else must know, in the same transaction,
that the record's documents changed — told by the provide seam and the metadata door of the runtime as
the composition root wires them, with what was stored, before the commit; a participant that fails
takes the change back with it."""

from __future__ import annotations

import pytest

from gateway.exchanges.record_changes import RecordChanges
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    HCP,
    PATIENT,
    SPID,
    open_record,
    provide,
    runtime,
    services,
)


def test_nobody_takes_part_until_a_participant_joins_and_each_is_told_in_order():
    changes = RecordChanges()
    told = []
    assert not changes.wants_documents

    changes.on_documents_stored(lambda connection, stored: told.append(("first", connection, stored)))
    changes.on_documents_stored(lambda connection, stored: told.append(("second", connection, stored)))
    changes.documents_stored("c", ["s"])
    changes.metadata_changed("c", ["m"])  # nobody listens to metadata changes: nothing happens

    assert changes.wants_documents
    assert told == [("first", "c", ["s"]), ("second", "c", ["s"])]


def test_a_provide_and_a_relabelling_reach_the_runtimes_participants(services):
    """The seam and the metadata door share the runtime's one RecordChanges (wiring)."""
    pid = open_record(services)
    stored, changed = [], []
    services.exchange.changes.on_documents_stored(lambda connection, found: stored.extend(found))
    services.exchange.changes.on_metadata_changed(
        lambda connection, found: changed.extend((connection.in_transaction(), c) for c in found))

    entry_id = provide(services, title="Lab report")
    services.metadata.change_confidentiality(principal=PATIENT, entry_id=entry_id, level="restricted")

    [submission] = stored
    assert (submission.spid, [d.entry.entry_id for d in submission.documents]) == (SPID, [entry_id])
    [(in_transaction, change)] = changed
    assert in_transaction and change.principal == PATIENT and change.spid == SPID
    assert (change.previous.version, change.previous.confidentiality_level) == (1, "normal")
    assert (change.stored.entry_id, change.stored.version, change.stored.confidentiality_level) == (
        entry_id, 2, "restricted")
    assert change.stored.patient_pid == pid


def test_a_change_that_changes_nothing_is_not_announced(services):
    open_record(services)
    entry_id = provide(services)
    changed = []
    services.exchange.changes.on_metadata_changed(lambda connection, found: changed.extend(found))

    services.metadata.change_confidentiality(principal=PATIENT, entry_id=entry_id, level="normal")

    assert changed == []


def test_a_failing_participant_takes_the_new_version_and_its_record_back(services, runtime):
    open_record(services)
    entry_id = provide(services)

    def outbox_down(connection, changed):
        raise RuntimeError("the outbox could not be written")

    services.exchange.changes.on_metadata_changed(outbox_down)
    records = len(runtime.ledger.all_records())

    with pytest.raises(RuntimeError):
        services.metadata.change_confidentiality(principal=PATIENT, entry_id=entry_id, level="secret")
    after = [(e["action"], e["outcome"], e.get("outcomeDesc")) for e in runtime.ledger.all_records()[records:]]

    assert [(v.version, v.confidentiality_level) for v in services.metadata.history(principal=PATIENT,
                                                                                    entry_id=entry_id)] == [
        (1, "normal")]
    assert services.exchange.read_reference(principal=HCP, entry_id=entry_id, base_url="https://gw")["meta"][
        "versionId"] == "1"
    assert after == [("E", "8", "RuntimeError")]  # the failed exchange audited; its success record rolled back
