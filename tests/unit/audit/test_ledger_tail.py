"""Item 14 of the hardening issue: the ledger's tail. Someone who can write the database tries each
attack; `verify_ledger` (with the witness kept outside the database) must name it. Before the fix
the first two passed verification (nothing signed after the last checkpoint) and so did the cut
back to an earlier checkpoint with the later checkpoints deleted."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, insert, select, text, update

from adapters.cara.store.database import make_engine, migrate
from audit.ledger import DatabaseAuditLedger, SignedHead, read_head, verify_ledger
from audit.schema import audit_checkpoint, audit_head, audit_record
from audit.signing import chain_hash, key_id_of
from audit.witness import WitnessUnreadable, WitnessWriter, append_head, head_line, read_witness
from conftest import SPID, fresh_postgres_url
from unit.audit.test_audit_ledger import patient_key, read_event

EVERY = 10


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.sqlite3'}" if request.param == "sqlite"
                         else fresh_postgres_url())
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ledger(engine):
    key = Ed25519PrivateKey.generate()
    return DatabaseAuditLedger(engine=engine, signing_key=key, key_id=key_id_of(key.public_key()),
                               checkpoint_every=EVERY)


def fill(ledger, start: int, stop: int) -> None:
    for number in range(start, stop + 1):
        ledger.append_now(read_event(number), patient_key=patient_key(SPID))


def verify(engine, ledger, witness: SignedHead | None = None):
    return verify_ledger(engine=engine, public_keys=ledger.public_keys, checkpoint_every=EVERY, witness=witness)


def rewrite_from(engine, first: int) -> None:
    """Change record `first` and rebuild the chain from it to the end (valid hashes, no key needed)."""
    with engine.begin() as connection:
        rows = connection.execute(select(audit_record).where(audit_record.c.seq >= first)
                                  .order_by(audit_record.c.seq)).all()
        prev_hash = rows[0].prev_hash
        for row in rows:
            record_json = row.record_json.replace("Allzeitbereit", "Mallory") if row.seq == first else row.record_json
            record_hash = chain_hash(prev_hash=prev_hash, seq=row.seq, patient_key=row.patient_key,
                                     record_json=record_json)
            connection.execute(update(audit_record).where(audit_record.c.seq == row.seq).values(
                record_json=record_json, prev_hash=prev_hash, record_hash=record_hash))
            prev_hash = record_hash


def cut_back(engine, to: int, saved_head) -> None:
    """Delete every record and checkpoint after `to` and put back a head saved when `to` was the end."""
    with engine.begin() as connection:
        connection.execute(delete(audit_record).where(audit_record.c.seq > to))
        connection.execute(delete(audit_checkpoint).where(audit_checkpoint.c.seq > to))
        connection.execute(delete(audit_head))
        connection.execute(insert(audit_head).values(id=1, **saved_head._asdict()))


def saved_head(engine):
    with engine.connect() as connection:
        return connection.execute(select(audit_head.c.seq, audit_head.c.record_hash, audit_head.c.signed_at,
                                         audit_head.c.key_id, audit_head.c.signature)).one()


def test_every_commit_batch_signs_the_head(engine, ledger):
    fill(ledger, 1, 25)

    head = read_head(engine)

    assert head.seq == 25 and head.verifies(ledger.public_keys)
    assert verify(engine, ledger).ok
    assert verify(engine, ledger).unsigned_records == 0


def test_a_rewrite_after_the_last_checkpoint_is_named(engine, ledger):
    fill(ledger, 1, 25)
    rewrite_from(engine, 23)
    with engine.connect() as connection:
        assert "Mallory" in connection.execute(select(audit_record.c.record_json)
                                               .where(audit_record.c.seq == 23)).scalar_one()

    report = verify(engine, ledger)

    assert (report.ok, report.first_problem) == (False, "record 25 does not match the signed head (the chain was "
                                                        "rewritten)")


def test_a_deletion_after_the_last_checkpoint_is_named(engine, ledger):
    fill(ledger, 1, 25)
    with engine.begin() as connection:
        connection.execute(delete(audit_record).where(audit_record.c.seq > 21))

    assert verify(engine, ledger).first_problem == "the ledger ends at 21 but its signed head is at 25 (records deleted)"


def test_deleting_the_head_too_is_named(engine, ledger):
    fill(ledger, 1, 25)
    with engine.begin() as connection:
        connection.execute(delete(audit_record).where(audit_record.c.seq > 21))
        connection.execute(delete(audit_head))

    assert verify(engine, ledger).first_problem == "the signed head is missing (deleted, or written before it existed)"


def test_records_appended_outside_the_gateway_are_named(engine, ledger):
    fill(ledger, 1, 25)
    head = saved_head(engine)
    fill(ledger, 26, 27)
    cut_back(engine, 27, head)  # the records stay; the head is put back to 25

    assert verify(engine, ledger).first_problem == ("records 26-27 follow the signed head at 25: they were "
                                                    "written outside the gateway")


def test_a_cut_back_to_an_earlier_checkpoint_passes_the_database_alone_but_not_the_witness(engine, ledger, tmp_path):
    fill(ledger, 1, 20)
    earlier = saved_head(engine)  # the attacker keeps a copy of the head at 20
    writer = WitnessWriter(engine=engine, path=tmp_path / "witness.jsonl")
    fill(ledger, 21, 34)  # checkpoints at 30, head at 34
    assert writer.write_once()
    cut_back(engine, 20, earlier)
    witness = read_witness(tmp_path / "witness.jsonl", ledger.public_keys)

    alone = verify(engine, ledger)
    witnessed = verify(engine, ledger, witness.latest)

    assert alone.ok  # every signature left is genuine: the database cannot tell
    assert (witnessed.ok, witness.latest.seq, witness.bad_lines) == (False, 34, ())
    assert witnessed.first_problem.startswith("the ledger was cut back: it ends at 20 but the witness holds a head "
                                              "signed at ")
    assert witnessed.first_problem.endswith("covering record 34 (records 21-34 deleted)")


def test_the_witness_holds_only_committed_heads_and_only_grows(engine, ledger, tmp_path):
    path = tmp_path / "witness.jsonl"
    writer = WitnessWriter(engine=engine, path=path)
    fill(ledger, 1, 3)
    assert writer.write_once()
    with pytest.raises(RuntimeError):
        with engine.begin() as connection:  # a batch that rolls back signs a head that never commits
            ledger.append(connection, read_event(4), patient_key=patient_key(SPID))
            raise RuntimeError("the exchange failed")
    assert not writer.write_once()
    other_worker = WitnessWriter(engine=engine, path=path)
    assert not other_worker.write_once()  # the file already ends with this head

    lines = path.read_text().splitlines()

    assert [json.loads(line)["seq"] for line in lines] == [3]
    assert read_witness(path, ledger.public_keys).latest.seq == 3


def test_a_forged_witness_line_is_reported_and_ignored(engine, ledger, tmp_path):
    path = tmp_path / "witness.jsonl"
    fill(ledger, 1, 5)
    head = read_head(engine)
    append_head(path, head)
    forged = SignedHead(seq=99, record_hash=head.record_hash, signed_at=head.signed_at, key_id=head.key_id,
                        signature=b"\x00" * 64)
    with open(path, "a") as handle:
        handle.write(head_line(forged) + "\n")

    reading = read_witness(path, ledger.public_keys)

    assert (reading.latest.seq, reading.bad_lines) == (5, (2,))


def test_a_missing_witness_is_an_error(tmp_path, ledger):
    with pytest.raises(WitnessUnreadable, match="does not exist"):
        read_witness(tmp_path / "nowhere.jsonl", ledger.public_keys)


def test_a_witness_writer_appends_on_wake_at_most_once_per_interval(engine, ledger, tmp_path):
    path = tmp_path / "witness.jsonl"
    writer = WitnessWriter(engine=engine, path=path, interval_seconds=0.05)
    ledger.on_head_signed(writer.wake)
    writer.start()
    try:
        fill(ledger, 1, 30)
    finally:
        writer.stop()  # writes the last head

    seqs = [json.loads(line)["seq"] for line in path.read_text().splitlines()]

    assert seqs[-1] == 30 and seqs == sorted(set(seqs))


def test_records_the_head_was_not_written_for_are_not_a_cut(engine, ledger):
    """The witness lags behind by up to its interval: a ledger longer than the witness is fine."""
    fill(ledger, 1, 12)
    older = read_head(engine)
    fill(ledger, 13, 15)

    assert verify(engine, ledger, older).ok
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM audit_head")).scalar_one() == 1


@pytest.mark.parametrize("message", [b"", b"epr-gateway audit checkpoint v1\n42\nabc", bytes(range(256)) * 9])
def test_the_head_signer_makes_the_very_signatures_of_cryptography(message):
    """The ledger signs through libsodium (`Signer`, for speed); what it makes must be what
    cryptography's Ed25519 makes and verifies, or every verifier of the heads would break."""
    from audit.signing import Signer, SignatureInvalid, sign, verify

    key = Ed25519PrivateKey.generate()
    signature = Signer(key).sign(message)
    assert signature == sign(private_key=key, message=message)
    verify(public_key=key.public_key(), message=message, signature=signature)
    with pytest.raises(SignatureInvalid):
        verify(public_key=Ed25519PrivateKey.generate().public_key(), message=message, signature=signature)
