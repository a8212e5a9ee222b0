"""The audit ledger: append and verify, every kind of tampering named at the record it hits,
concurrent appenders, the patient's trail, the export with its proof, the signing key.
Each ledger test runs on SQLite and on the real PostgreSQL (database `epr_audit_test`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import create_engine, insert, make_url, select, text

from adapters.cara.store.database import make_engine, migrate
from audit.events import AuditRecord, DocumentRef, canonical_json, ledger_columns, to_audit_event
from audit.export import export
from audit.ledger import DatabaseAuditLedger, VerifyReport, prepare, verify_ledger
from audit.schema import audit_checkpoint, audit_record
from audit.signing import (
    DEVELOPMENT_KEY_NAME,
    SignatureInvalid,
    SigningKeyError,
    chain_hash,
    checkpoint_message,
    key_id_of,
    load_or_create_signing_key,
    public_key_from_raw,
    verify,
)
from consent.principal import Principal

SPID = "761337610469261945"
OTHER_SPID = "761337610411353650"
SITE = "2.16.756.5.30.1.999.1.1"
AUDIT_DATABASE = "epr_audit_test"
HCP = Principal(role="HCP", user_id="7601000234438", user_id_qualifier="urn:gs1:gln",
                name="Dr. med. Hans Allzeitbereit", token_id="jti-1", client_id="kis-spital")
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def patient_key(spid: str) -> str:
    return hmac.new(b"test index key", f"spid\x1f{spid}".encode(), hashlib.sha256).hexdigest()


def read_event(number: int, spid: str = SPID, atc_code: str | None = "ATC_DOC_READ") -> AuditRecord:
    return AuditRecord(transaction="ITI-68", principal=HCP, source_site=SITE, atc_code=atc_code, patient_spid=spid,
                       recorded=T0 + timedelta(minutes=number),
                       documents=(DocumentRef(unique_id=f"urn:oid:1.2.3.4.{number}"),),
                       traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


def audit_postgres_url() -> str:
    """A database of our own beside `epr_test`, which the other suites reset under our feet."""
    base = os.environ.get("EPR_TEST_DATABASE_URL")
    if not base:
        pytest.fail("EPR_TEST_DATABASE_URL is not set: run the suite with `make test`, which starts PostgreSQL")
    url = make_url(base)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        known = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                   {"name": AUDIT_DATABASE}).first()
        if known is None:
            connection.execute(text(f"CREATE DATABASE {AUDIT_DATABASE}"))
    admin.dispose()
    target = url.set(database=AUDIT_DATABASE)
    engine = create_engine(target)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return target.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}" if request.param == "sqlite" else audit_postgres_url()
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def make_ledger(engine, signing_key, every: int) -> DatabaseAuditLedger:
    return DatabaseAuditLedger(engine=engine, signing_key=signing_key, key_id=key_id_of(signing_key.public_key()),
                               checkpoint_every=every)


def filled_ledger(engine, signing_key, count: int, every: int = 10) -> DatabaseAuditLedger:
    ledger = make_ledger(engine, signing_key, every)
    for number in range(1, count + 1):
        ledger.append_now(read_event(number), patient_key=patient_key(SPID))
    return ledger


def execute(engine, statement: str, **parameters) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement), parameters)


def problem_report(records: int, checkpoints: int, problem: str) -> VerifyReport:
    return VerifyReport(ok=False, records_checked=records, checkpoints_checked=checkpoints, first_problem=problem,
                        last_seq=records, unsigned_records=records - checkpoints * 10)


# -- intact ledgers ------------------------------------------------------------------------------
def test_an_appended_ledger_verifies_and_is_signed_every_n_records(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 25)

    # Checkpoints every 10; the signed head (re-signed by every batch) covers the last 5.
    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == VerifyReport(
        ok=True, records_checked=25, checkpoints_checked=2, first_problem=None, last_seq=25, unsigned_records=0)
    assert ledger.checkpoint() == 25
    assert ledger.checkpoint() == 25  # the head is signed once
    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == VerifyReport(
        ok=True, records_checked=25, checkpoints_checked=3, first_problem=None, last_seq=25, unsigned_records=0)


def test_an_empty_ledger_verifies_and_has_nothing_to_sign(engine, signing_key):
    ledger = make_ledger(engine, signing_key, 10)

    assert ledger.checkpoint() is None
    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == VerifyReport(
        ok=True, records_checked=0, checkpoints_checked=0, first_problem=None, last_seq=0, unsigned_records=0)


def test_a_record_commits_and_rolls_back_with_the_change_it_proves(engine, signing_key):
    ledger = make_ledger(engine, signing_key, 10)
    kept = read_event(2)

    with pytest.raises(RuntimeError), engine.begin() as connection:
        ledger.append(connection, read_event(1), patient_key=patient_key(SPID))
        raise RuntimeError("the audited change failed")
    with engine.begin() as connection:
        seq = ledger.append(connection, kept, patient_key=patient_key(SPID))

    assert seq == 1
    assert [event["id"] for event in ledger.all_records()] == [kept.event_id]


def test_the_stored_record_is_the_canonical_audit_event_and_its_hash_chain(engine, signing_key):
    ledger = make_ledger(engine, signing_key, 10)
    record = read_event(1)
    ledger.append_now(record, patient_key=patient_key(SPID))

    with engine.connect() as connection:
        row = connection.execute(select(audit_record)).one()
    expected_json = canonical_json(to_audit_event(record))
    assert (row.seq, row.patient_key, row.record_json, row.prev_hash) == (1, patient_key(SPID), expected_json, "0" * 64)
    assert row.record_hash == chain_hash(prev_hash="0" * 64, seq=1, patient_key=patient_key(SPID),
                                         record_json=expected_json)
    assert {k: getattr(row, k) for k in ("recorded_at", "event_type", "subtype", "outcome", "professional")} == \
        ledger_columns(json.loads(expected_json)) == {"recorded_at": datetime(2025, 3, 1, 8, 1), "event_type": "ITI-68",
                                                      "subtype": "ATC_DOC_READ", "outcome": "0",
                                                      "professional": record.principal.user_id}


# -- tampering -------------------------------------------------------------------------------------
def test_a_changed_record_is_named(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 30)
    with engine.connect() as connection:
        stored = connection.execute(select(audit_record.c.record_json).where(audit_record.c.seq == 17)).scalar_one()
    execute(engine, "UPDATE audit_record SET record_json = :changed WHERE seq = 17",
            changed=stored.replace('"outcome":"0"', '"outcome":"4"'))

    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == problem_report(
        16, 1, "record 17 was changed")


def test_a_record_hidden_from_a_professionals_activity_through_its_column_is_named(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 30)
    execute(engine, "UPDATE audit_record SET professional = NULL WHERE seq = 17")

    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == problem_report(
        16, 1, "record 17 was changed (its professional column disagrees with its AuditEvent)")


def test_a_record_hidden_from_the_patient_trail_through_its_columns_is_named(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 30)
    execute(engine, "UPDATE audit_record SET subtype = NULL WHERE seq = 17")

    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == problem_report(
        16, 1, "record 17 was changed (its subtype column disagrees with its AuditEvent)")


def test_a_deleted_record_is_named(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 30)
    execute(engine, "DELETE FROM audit_record WHERE seq = 17")

    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == problem_report(
        16, 1, "record 17 is missing (gap between 16 and 18)")


def test_two_swapped_records_are_named(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 30)
    # Exchanging every column but the position is renumbering the two rows.
    execute(engine, "UPDATE audit_record SET seq = 1000017 WHERE seq = 17")
    execute(engine, "UPDATE audit_record SET seq = 17 WHERE seq = 18")
    execute(engine, "UPDATE audit_record SET seq = 18 WHERE seq = 1000017")

    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == problem_report(
        16, 1, "record 17 is out of order / inserted (it does not link to record 16)")


def test_a_forged_record_inserted_with_a_correct_hash_is_named(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 30)
    execute(engine, "UPDATE audit_record SET seq = seq + 1000000 WHERE seq >= 18")
    execute(engine, "UPDATE audit_record SET seq = seq - 999999 WHERE seq >= 1000000")
    with engine.begin() as connection:
        prev_hash = connection.execute(select(audit_record.c.record_hash).where(audit_record.c.seq == 17)).scalar_one()
        forged = canonical_json(to_audit_event(read_event(99, spid=OTHER_SPID)))
        connection.execute(insert(audit_record).values(
            seq=18, patient_key=patient_key(OTHER_SPID), record_json=forged, prev_hash=prev_hash,
            record_hash=chain_hash(prev_hash=prev_hash, seq=18, patient_key=patient_key(OTHER_SPID),
                                   record_json=forged),
            **ledger_columns(json.loads(forged))))

    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == problem_report(
        18, 1, "record 18 is out of order / inserted (record 19 links to 17)")


def test_a_truncated_tail_after_a_checkpoint_is_named(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 200, every=100)
    execute(engine, "DELETE FROM audit_record WHERE seq > 150")

    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == VerifyReport(
        ok=False, records_checked=150, checkpoints_checked=1, last_seq=150, unsigned_records=50,
        first_problem="the ledger ends at 150 but checkpoint 200 covers records after it (truncated tail)")


def test_a_bad_checkpoint_signature_is_named(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 30)
    with engine.begin() as connection:
        connection.execute(audit_checkpoint.update().where(audit_checkpoint.c.seq == 20)
                           .values(signature=b"\x00" * 64))

    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == problem_report(
        19, 1, "checkpoint at 20 has a bad signature")


def test_a_rebuilt_chain_no_longer_matches_its_signed_checkpoint(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 30)
    with engine.begin() as connection:  # rewrite record 5 and recompute every later link
        rows = connection.execute(
            select(audit_record).where(audit_record.c.seq >= 5).order_by(audit_record.c.seq)).all()
        prev_hash = connection.execute(select(audit_record.c.record_hash).where(audit_record.c.seq == 4)).scalar_one()
        for row in rows:
            record_json = row.record_json.replace("ATC_DOC_READ", "ATC_DOC_SEARCH") if row.seq == 5 else row.record_json
            record_hash = chain_hash(prev_hash=prev_hash, seq=row.seq, patient_key=row.patient_key,
                                     record_json=record_json)
            connection.execute(audit_record.update().where(audit_record.c.seq == row.seq).values(
                record_json=record_json, prev_hash=prev_hash, record_hash=record_hash,
                subtype=ledger_columns(json.loads(record_json))["subtype"]))
            prev_hash = record_hash

    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == problem_report(
        9, 0, "checkpoint at 10 does not match record 10 (the chain was rebuilt)")


def test_a_checkpoint_from_an_unknown_key_is_named(engine, signing_key):
    filled_ledger(engine, signing_key, 12)
    stranger = Ed25519PrivateKey.generate().public_key()

    assert verify_ledger(engine=engine, public_keys={key_id_of(stranger): stranger}) == problem_report(
        9, 0, f"checkpoint at 10 is signed by an unknown key {key_id_of(signing_key.public_key())}")


# -- concurrency ---------------------------------------------------------------------------------
def test_concurrent_appenders_leave_one_contiguous_chain(engine, signing_key):
    ledger = make_ledger(engine, signing_key, 50)
    failures: list[BaseException] = []

    def append_fifty(worker: int) -> None:
        try:
            for number in range(50):
                ledger.append_now(read_event(worker * 100 + number), patient_key=patient_key(SPID))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=append_fifty, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with engine.connect() as connection:
        seqs = connection.execute(select(audit_record.c.seq).order_by(audit_record.c.seq)).scalars().all()
        signed = connection.execute(select(audit_checkpoint.c.seq).order_by(audit_checkpoint.c.seq)).scalars().all()
    assert failures == []
    assert seqs == list(range(1, 201))
    assert signed == [50, 100, 150, 200]
    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == VerifyReport(
        ok=True, records_checked=200, checkpoints_checked=4, first_problem=None, last_seq=200, unsigned_records=0)


def test_a_batch_larger_than_one_insert_statement_is_one_chain_in_order(engine, signing_key):
    """A group commit's batch is written as multi-row INSERTs of at most 200 rows: 450 records take
    three statements, still one contiguous, signed chain in the order given."""
    ledger = make_ledger(engine, signing_key, 100)
    batch = [prepare(read_event(number), patient_key(SPID)) for number in range(1, 451)]
    with engine.begin() as connection:
        assert ledger.append_many(connection, batch) == list(range(1, 451))

    with engine.connect() as connection:
        stored = connection.execute(select(audit_record.c.seq, audit_record.c.record_json)
                                    .order_by(audit_record.c.seq)).all()
    assert [row.record_json for row in stored] == [record.record_json for record in batch]
    assert verify_ledger(engine=engine, public_keys=ledger.public_keys) == VerifyReport(
        ok=True, records_checked=450, checkpoints_checked=4, first_problem=None, last_seq=450, unsigned_records=0)


def test_a_prepared_record_is_the_canonical_event_and_its_columns():
    record = read_event(3)
    prepared = prepare(record, patient_key(SPID))
    event = to_audit_event(record)
    assert json.loads(prepared.record_json) == json.loads(canonical_json(event))
    assert (prepared.recorded_at, prepared.event_type, prepared.subtype, prepared.outcome, prepared.professional) == tuple(
        ledger_columns(json.loads(prepared.record_json)).values())
    # The canonical form is what the standard library writes with sorted keys and no spaces.
    assert prepared.record_json == json.dumps(json.loads(prepared.record_json), sort_keys=True,
                                              separators=(",", ":"), ensure_ascii=False)


# -- reading -------------------------------------------------------------------------------------
def test_the_patient_trail_holds_only_that_patients_visible_events_in_the_range(engine, signing_key):
    ledger = make_ledger(engine, signing_key, 10)
    ledger.append_now(read_event(1), patient_key=patient_key(SPID))
    ledger.append_now(read_event(2, spid=OTHER_SPID), patient_key=patient_key(OTHER_SPID))
    ledger.append_now(read_event(3, atc_code=None), patient_key=patient_key(SPID))  # not patient-visible
    ledger.append_now(read_event(4), patient_key=patient_key(SPID))
    ledger.append_now(read_event(9), patient_key=patient_key(SPID))

    trail = ledger.records_for_patient(patient_key=patient_key(SPID), since=T0 + timedelta(minutes=1),
                                       until=T0 + timedelta(minutes=5))

    assert [(event["recorded"], event["subtype"], event["type"]["code"]) for event in trail] == [
        ("2025-03-01T08:01:00.000Z", [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.7", "code": "ATC_DOC_READ",
                                       "display": "Document retrieval"}], "110106"),
        ("2025-03-01T08:04:00.000Z", [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.7", "code": "ATC_DOC_READ",
                                       "display": "Document retrieval"}], "110106"),
    ]
    assert [AuditEvent.model_validate(event).id for event in trail] == [event["id"] for event in trail]
    assert len(ledger.all_records()) == 5
    assert len(ledger.all_records(since=T0 + timedelta(minutes=4))) == 2


# -- export --------------------------------------------------------------------------------------
def test_the_ndjson_export_carries_what_is_needed_to_verify_it_elsewhere(engine, signing_key):
    ledger = filled_ledger(engine, signing_key, 25)
    trusted = {key_id_of(signing_key.public_key())}

    lines = [json.loads(line) for line in export(engine=engine, since=T0 + timedelta(minutes=3), fmt="ndjson")]

    assert [line["seq"] for line in lines] == list(range(3, 26))
    assert [line["checkpoint"] and line["checkpoint"]["seq"] for line in lines] == [10] * 8 + [20] * 10 + [None] * 5
    hashes = {}
    for line in lines:  # what an outside verifier does, from the lines alone
        assert line["record_hash"] == chain_hash(prev_hash=line["prev_hash"], seq=line["seq"],
                                                 patient_key=line["patient_key"], record_json=line["record_json"])
        hashes[line["seq"]] = line["record_hash"]
    assert all(line["prev_hash"] == hashes[line["seq"] - 1] for line in lines[1:])
    for checkpoint in {line["checkpoint"]["seq"]: line["checkpoint"] for line in lines if line["checkpoint"]}.values():
        public_key = public_key_from_raw(base64.b64decode(checkpoint["public_key"]))
        assert key_id_of(public_key) == checkpoint["key_id"] and checkpoint["key_id"] in trusted
        assert checkpoint["record_hash"] == hashes[checkpoint["seq"]]
        signed_at = datetime.strptime(checkpoint["signed_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        verify(public_key=public_key, signature=base64.b64decode(checkpoint["signature"]),
               message=checkpoint_message(seq=checkpoint["seq"], record_hash=checkpoint["record_hash"],
                                          signed_at=signed_at, key_id=checkpoint["key_id"]))
    ledger.checkpoint()
    assert json.loads(list(export(engine=engine, after_seq=24))[0])["checkpoint"]["seq"] == 25


def test_the_syslog_export_is_rfc5424_with_the_audit_event_as_message(engine, signing_key):
    filled_ledger(engine, signing_key, 3)

    lines = list(export(engine=engine, fmt="syslog", hostname="gw1.example.ch"))

    pattern = re.compile(r'<85>1 (\S+) gw1\.example\.ch epr-gateway - ATNA \[meta sequenceId="(\d+)"\] (\{.*\})')
    matches = [pattern.fullmatch(line) for line in lines]
    assert [(m.group(1), m.group(2)) for m in matches] == [
        ("2025-03-01T08:01:00.000Z", "1"), ("2025-03-01T08:02:00.000Z", "2"), ("2025-03-01T08:03:00.000Z", "3")]
    assert [AuditEvent.model_validate_json(m.group(3)).subtype[1].code for m in matches] == ["ITI-68"] * 3


# -- keys ----------------------------------------------------------------------------------------
def test_the_development_signing_key_is_generated_once_and_private(tmp_path):
    path = tmp_path / "keys" / DEVELOPMENT_KEY_NAME

    first_id, first_key = load_or_create_signing_key(path)
    second_id, _ = load_or_create_signing_key(path)

    assert first_id == second_id == key_id_of(first_key.public_key())
    assert re.fullmatch(r"[0-9a-f]{16}", first_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [DEVELOPMENT_KEY_NAME]


def test_a_missing_production_key_is_not_generated(tmp_path):
    with pytest.raises(SigningKeyError):
        load_or_create_signing_key(tmp_path / "audit-signing-key.pem")
    assert list(tmp_path.iterdir()) == []


def test_misuse_is_refused(engine, signing_key):
    other = Ed25519PrivateKey.generate()
    with pytest.raises(ValueError):
        DatabaseAuditLedger(engine=engine, signing_key=signing_key, key_id=key_id_of(other.public_key()))
    with pytest.raises(ValueError):
        verify_ledger(engine=engine, public_keys={})
    with pytest.raises(SignatureInvalid):
        verify(public_key=other.public_key(), message=b"m", signature=signing_key.sign(b"m"))
