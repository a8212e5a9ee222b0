"""Key rotation's pieces on a real store: every sealed table is re-wrapped (the list is read from the
database), a row sealed again while the rewrap read it is left as sealed, the keyring file's steps, and
the workers' reports of the keys they hold."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from sqlalchemy import select, text, update

from adapters.cara.crypto import Keyring, KeyringError, Sealed
from adapters.cara.store.database import make_engine, migrate
from adapters.cara.store.key_holders import KeyHeartbeat, KeyHolders
from adapters.cara.store.key_rotation import rewrap, rows_not_under, rows_under, sealed_tables
from adapters.cara.store.schema import patient
from conftest import fresh_postgres_url
from gateway.migration.journal import Journal, JournalRow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'k.sqlite3'}" if request.param == "sqlite" else fresh_postgres_url())
    migrate(engine)
    path = tmp_path / "keyring.json"
    Keyring.create_file(path)
    yield engine, path
    engine.dispose()


def seal_patient(engine, keyring: Keyring, pid: str, value: bytes) -> None:
    sealed = keyring.seal(value, f"patient:{pid}")
    with engine.begin() as connection:
        connection.execute(patient.insert().values(pid=pid, sealed_key=sealed.wrapped_key, sealed=sealed.ciphertext,
                                                   created_at=datetime(2026, 1, 1), updated_at=datetime(2026, 1, 1)))


def test_every_table_with_sealed_values_is_found_in_the_database(store):
    engine, _ = store
    names = {t.name for t in sealed_tables(engine)}
    with engine.connect() as connection:
        dialect = connection.dialect.name
        query = ("SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c WHERE c.name = 'sealed_key'"
                 if dialect == "sqlite" else
                 "SELECT table_name FROM information_schema.columns WHERE column_name = 'sealed_key' "
                 "AND table_schema = 'public'")
        declared = set(connection.execute(text(query)).scalars())
    assert names == declared
    assert "migration_held" in names  # the migration's holding area, which the hand-kept list missed


def test_a_held_migration_document_still_opens_after_the_old_key_is_retired(store):
    """Before: `keys rotate` re-wrapped the tables of a hand-kept list, without the migration's holding
    area: once the old key was gone, `migrate retry` could no longer open what it held."""
    engine, path = store
    old = Keyring.load(path)
    journal = Journal(engine=engine, keyring=old)
    row = JournalRow(source="media/IHE_XDM/SUBSET01/DOC0001.PDF", media="media", outcome="held",
                     reason_code="unknown-patient", reason="feed it")
    journal.record_now([row], held=[(row, {"content": b"%PDF-1.4 held"})])
    old_id = old.active_key_id
    new_id = Keyring.add_key_to_file(path, active=False)
    Keyring.promote_in_file(path, new_id)

    report = rewrap(engine=engine, keyring=Keyring.load(path))
    Keyring.retire_from_file(path, old_id)

    assert report.rewrapped["migration_held"] == 1
    assert sum(rows_under(engine=engine, key_id=old_id).values()) == 0
    assert [h.payload for h in Journal(engine=engine, keyring=Keyring.load(path)).held()] == [{"content": b"%PDF-1.4 held"}]


def test_the_backlog_counts_rows_under_another_key_than_the_active_one(store):
    engine, path = store
    old = Keyring.load(path)
    for n in range(3):
        seal_patient(engine, old, f"pid-{n}", b"demographics")
    new_id = Keyring.add_key_to_file(path)  # active at once
    new = Keyring.load(path)
    seal_patient(engine, new, "pid-new", b"demographics")

    assert rows_not_under(engine=engine, key_id=new_id)["patient"] == 3
    assert rows_under(engine=engine, key_id=old.active_key_id)["patient"] == 3
    rewrap(engine=engine, keyring=new, batch=2)  # several batches
    assert sum(rows_not_under(engine=engine, key_id=new_id).values()) == 0


@pytest.mark.postgres
def test_a_row_sealed_again_while_the_rewrap_reads_it_is_left_as_sealed(tmp_path):
    """Compare and set: the rewrap read the row's wrapped key; a policy change (say) seals the row again
    with a new data key before the rewrap writes. Writing the old data key over the new one would leave a
    ciphertext its data key does not open (a decryption failure for every later read)."""
    engine = make_engine(fresh_postgres_url())
    migrate(engine)
    path = tmp_path / "keyring.json"
    Keyring.create_file(path)
    old = Keyring.load(path)
    seal_patient(engine, old, "pid-1", b"before")
    Keyring.add_key_to_file(path)
    new = Keyring.load(path)

    class SealedAgainMeanwhile(Keyring):
        def rewrap(self, wrapped_key: bytes) -> bytes:
            again = new.seal(b"after", "patient:pid-1")
            with engine.begin() as other:  # another worker's transaction, committed first
                other.execute(update(patient).where(patient.c.pid == "pid-1")
                              .values(sealed_key=again.wrapped_key, sealed=again.ciphertext))
            return new.rewrap(wrapped_key)

    meddling = SealedAgainMeanwhile.load(path)
    report = rewrap(engine=engine, keyring=meddling)
    with engine.connect() as connection:
        row = connection.execute(select(patient.c.sealed_key, patient.c.sealed).where(patient.c.pid == "pid-1")).one()
    engine.dispose()

    assert (report.rewrapped["patient"], report.changed_meanwhile) == (0, 1)
    assert new.open(Sealed(row.sealed_key, row.sealed), "patient:pid-1") == b"after"


def test_the_keyring_file_steps(tmp_path):
    path = tmp_path / "keyring.json"
    Keyring.create_file(path)
    first = Keyring.load(path).active_key_id

    added = Keyring.add_key_to_file(path, active=False)
    assert Keyring.load(path).key_ids == [first, added]  # decrypt-only: still wrapping under the first
    Keyring.promote_in_file(path, added)
    assert Keyring.load(path).key_ids == [added, first]
    with pytest.raises(KeyringError, match="active key"):
        Keyring.retire_from_file(path, added)
    with pytest.raises(KeyringError, match="not in the keyring"):
        Keyring.promote_in_file(path, "kek-unknown")
    Keyring.retire_from_file(path, first)
    assert Keyring.load(path).key_ids == [added]


def test_a_process_reports_the_keys_it_holds_and_follows_the_file(store):
    engine, path = store
    keyring = Keyring.load(path)
    holders = KeyHolders(engine=engine)
    heartbeat = KeyHeartbeat(keyring=keyring, holders=holders, interval_seconds=0.1)
    heartbeat.start()
    try:
        added = Keyring.add_key_to_file(path, active=False)  # by `keys add` in another process
        deadline = time.monotonic() + 10
        while not any(added in h.key_ids for h in holders.live(stale_after=1)) and time.monotonic() < deadline:
            time.sleep(0.05)
        (holder,) = holders.live(stale_after=1)
    finally:
        heartbeat.stop()

    assert holder.key_ids == (keyring.key_ids[0], added) and holder.holder == heartbeat.holder
    assert holders.live(stale_after=60) == []  # a clean stop removes the row


def test_a_process_has_reported_its_keys_before_it_serves(store):
    engine, path = store
    keyring = Keyring.load(path)
    holders = KeyHolders(engine=engine)
    heartbeat = KeyHeartbeat(keyring=keyring, holders=holders, interval_seconds=60)  # no second beat here
    heartbeat.start()  # what the app's lifespan does before its first request
    try:
        reported = holders.live(stale_after=60)
    finally:
        heartbeat.stop()

    assert [(h.holder, h.key_ids) for h in reported] == [(heartbeat.holder, tuple(keyring.key_ids))]
