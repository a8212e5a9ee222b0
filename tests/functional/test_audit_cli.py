"""`epr-gateway audit verify` and `audit export` as an operator runs them: a separate process reading
the EPR_* settings of a gateway that has served real exchanges. Tampering is done directly in the
database, as someone with write access to it could, and verify must name the record it hit."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from datetime import datetime

import orjson
import pytest
from sqlalchemy import func, select, text

from audit.schema import audit_checkpoint, audit_record
from audit.signing import GENESIS_HASH, chain_hash, checkpoint_message, key_id_of, load_signing_key, verify
from conftest import SEARCH, SPID, Gateway, running_gateway
from functional.helpers import document_ids, one_document_bundle

CHECKPOINT_EVERY = 3
SYSLOG_PRIORITY = {"0": "85", "4": "84", "8": "84", "12": "84"}  # authpriv: notice for a success, else warning
CONTENT_COLUMNS = ("recorded_at", "patient_key", "event_type", "subtype", "outcome", "record_json", "prev_hash",
                   "record_hash")


@pytest.fixture
def checkpointed(tmp_path, database_url) -> Gateway:
    """The gateway (SQLite and PostgreSQL) signing a checkpoint every 3 records, after real exchanges."""
    with running_gateway(tmp_path, database_url, audit_checkpoint_every=CHECKPOINT_EVERY) as running:
        exchanges(running)
        yield running


def exchanges(gateway: Gateway) -> None:
    """An ordinary working session: feed, onboarding and grant, a provide of two documents, a search, a
    retrieve, the patient reading their trail, and one refused request."""
    gateway.register_patient()
    provided = gateway.provide(provide_two())
    assert provided.status_code == 200, provided.text
    assert gateway.find().json()["total"] == 2
    entry_id = document_ids(provided.json())[0]
    assert gateway.client.get(f"/fhir/Binary/{entry_id}", headers=gateway.as_hcp()).status_code == 200
    trail = gateway.client.get("/fhir/AuditEvent", params={"entity.identifier": SEARCH + SPID},
                               headers=gateway.tokens.headers(gateway.tokens.patient()))
    assert trail.status_code == 200, trail.text
    refused = gateway.client.get(f"/fhir/Binary/{entry_id}",
                                 headers=gateway.tokens.headers(gateway.tokens.hcp(gln="7601000000019")))
    assert refused.status_code == 404  # not granted: looks like no such document


def provide_two() -> dict:
    first, second = one_document_bundle(), one_document_bundle(title="Lab report")
    first["entry"][0]["resource"]["entry"] += second["entry"][0]["resource"]["entry"]
    first["entry"] += second["entry"][1:]
    return first


def cli(gateway: Gateway, *args: str) -> subprocess.CompletedProcess:
    settings = gateway.runtime.settings
    env = {"PATH": "/usr/bin:/bin", "EPR_DATA_DIR": str(settings.data_dir),
           "EPR_DATABASE_URL": settings.resolved_database_url, "EPR_DEMO_DATA": "false",
           "EPR_AUDIT_SIGNING_KEY": str(settings.audit_signing_key_path),
           "EPR_AUDIT_CHECKPOINT_EVERY": str(settings.audit_checkpoint_every)}
    return subprocess.run([sys.executable, "-c", "from gateway.cli import app; app()", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def ledger_size(gateway: Gateway) -> tuple[int, int]:
    with gateway.runtime.engine.connect() as connection:
        return (connection.execute(select(func.count()).select_from(audit_record)).scalar_one(),
                connection.execute(select(func.count()).select_from(audit_checkpoint)).scalar_one())


def seq_of(connection, transaction: str, atc: str) -> int:
    """The first record of `transaction` with CH:ATC event type `atc`."""
    return connection.execute(select(func.min(audit_record.c.seq)).where(
        audit_record.c.event_type == transaction, audit_record.c.subtype == atc)).scalar_one()


# -- verify ------------------------------------------------------------------------------------
def test_verify_passes_after_real_exchanges(sqlite_gateway):
    exchanges(sqlite_gateway)
    records, checkpoints = ledger_size(sqlite_gateway)

    verified = cli(sqlite_gateway, "audit", "verify")

    assert (verified.returncode, verified.stderr) == (0, "")
    # the default checkpoints every 100 records; the head, signed by every batch, covers these few
    assert records >= 10 and checkpoints == 0
    assert re.fullmatch(rf"audit ledger verifies: {records} records, 0 checkpoints; signed head at {records}, "
                        r"witness at \d+\n", verified.stdout)


def test_verify_checks_every_checkpoint(checkpointed):
    records, checkpoints = ledger_size(checkpointed)

    verified = cli(checkpointed, "audit", "verify")

    assert (verified.returncode, verified.stderr) == (0, "")
    unsigned = records - checkpoints * CHECKPOINT_EVERY
    assert checkpoints >= 3 and unsigned in (1, 2)  # the session ends between two checkpoints
    assert re.fullmatch(rf"audit ledger verifies: {records} records, {checkpoints} checkpoints; signed head at "
                        rf"{records}, witness at \d+\n", verified.stdout)


def change_one_field(connection) -> str:
    """Who uploaded the document is rewritten in the hashed AuditEvent."""
    seq = seq_of(connection, "ITI-65", "ATC_DOC_CREATE")
    connection.execute(text("UPDATE audit_record SET record_json = replace(record_json, :old, :new) WHERE seq = :seq"),
                       {"old": "Dr. Luc Favre", "new": "Dr. Eve Mallory", "seq": seq})
    changed = connection.execute(select(audit_record.c.record_json).where(audit_record.c.seq == seq)).scalar_one()
    assert "Dr. Eve Mallory" in changed and "Dr. Luc Favre" not in changed
    return f"record {seq} was changed"


def hide_from_trail(connection) -> str:
    """The query column that puts a record in the patient's trail is cleared; the JSON is untouched."""
    seq = seq_of(connection, "ITI-68", "ATC_DOC_READ")
    connection.execute(text("UPDATE audit_record SET subtype = NULL WHERE seq = :seq"), {"seq": seq})
    return f"record {seq} was changed (its subtype column disagrees with its AuditEvent)"


def delete_one(connection) -> str:
    seq = seq_of(connection, "ITI-65", "ATC_DOC_CREATE")
    connection.execute(text("DELETE FROM audit_record WHERE seq = :seq"), {"seq": seq})
    return f"record {seq} is missing (gap between {seq - 1} and {seq + 1})"


def swap_two(connection) -> str:
    """Two records exchange their whole contents (each keeps its position)."""
    first = seq_of(connection, "ITI-65", "ATC_DOC_CREATE")
    second = first + 2
    rows = {row.seq: row for row in connection.execute(
        select(audit_record).where(audit_record.c.seq.in_((first, second))))}
    for here, there in ((first, second), (second, first)):
        connection.execute(audit_record.update().where(audit_record.c.seq == here)
                           .values({c: getattr(rows[there], c) for c in CONTENT_COLUMNS}))
    assert rows[first].record_json != rows[second].record_json
    return f"record {first} is out of order / inserted (it does not link to record {first - 1})"


def truncate_tail(connection) -> str:
    """The last records are cut off after a checkpoint, with the checkpoints that covered them left."""
    last_checkpoint = connection.execute(select(func.max(audit_checkpoint.c.seq))).scalar_one()
    keep = last_checkpoint - CHECKPOINT_EVERY - 1
    connection.execute(text("DELETE FROM audit_record WHERE seq > :keep"), {"keep": keep})
    return f"the ledger ends at {keep} but checkpoint {last_checkpoint} covers records after it (truncated tail)"


def rebuild_chain(connection) -> str:
    """The professional's name is changed in every record and the whole chain recomputed from the
    genesis: every record links, but the first signed head no longer matches."""
    rows = connection.execute(select(audit_record).order_by(audit_record.c.seq)).all()
    assert "Dr. Luc Favre" in rows[0].record_json  # the feed, by the test HCP
    prev_hash = GENESIS_HASH
    for row in rows:
        record_json = row.record_json.replace("Dr. Luc Favre", "Dr. Eve Mallory")
        record_hash = chain_hash(prev_hash=prev_hash, seq=row.seq, patient_key=row.patient_key,
                                 record_json=record_json)
        connection.execute(audit_record.update().where(audit_record.c.seq == row.seq)
                           .values(record_json=record_json, prev_hash=prev_hash, record_hash=record_hash))
        prev_hash = record_hash
    return f"checkpoint at {CHECKPOINT_EVERY} does not match record {CHECKPOINT_EVERY} (the chain was rebuilt)"


def rebuild_chain_and_drop_checkpoints(connection) -> str:
    """The chain is rebuilt and the signed checkpoints that would betray it are deleted."""
    rebuild_chain(connection)
    connection.execute(text("DELETE FROM audit_checkpoint"))
    return f"checkpoint at {CHECKPOINT_EVERY} is missing (one is signed every {CHECKPOINT_EVERY} records)"


def forge_checkpoint(connection) -> str:
    """A checkpoint's signed head is moved by one record: the signature no longer covers it."""
    signed = connection.execute(select(func.min(audit_checkpoint.c.seq))).scalar_one()
    connection.execute(text("UPDATE audit_checkpoint SET record_hash = "
                            "(SELECT record_hash FROM audit_record WHERE seq = :other) WHERE seq = :seq"),
                       {"seq": signed, "other": signed + 1})
    return f"checkpoint at {signed} has a bad signature"


@pytest.mark.parametrize("tamper", [change_one_field, hide_from_trail, delete_one, swap_two, truncate_tail,
                                    rebuild_chain, rebuild_chain_and_drop_checkpoints, forge_checkpoint])
def test_verify_names_the_tampered_record(checkpointed, tamper):
    with checkpointed.runtime.engine.begin() as connection:
        problem = tamper(connection)

    verified = cli(checkpointed, "audit", "verify")

    assert verified.returncode == 1
    assert verified.stdout == ""
    assert re.fullmatch(r"AUDIT LEDGER DOES NOT VERIFY \(\d+ records, \d+ checkpoints\): (.*)\n",
                        verified.stderr).group(1) == problem


# -- export ------------------------------------------------------------------------------------
def test_export_ndjson_carries_the_proof_checkable_elsewhere(checkpointed):
    records, checkpoints = ledger_size(checkpointed)
    key_id, key = load_signing_key(checkpointed.runtime.settings.audit_signing_key_path)  # trusted out of band

    exported = cli(checkpointed, "audit", "export", "--format", "ndjson")

    assert (exported.returncode, exported.stderr) == (0, "")
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, records + 1))
    previous = GENESIS_HASH
    for line in lines:  # the chain, recomputed from the exported values alone
        assert line["prev_hash"] == previous
        assert line["record_hash"] == chain_hash(prev_hash=line["prev_hash"], seq=line["seq"],
                                                 patient_key=line["patient_key"], record_json=line["record_json"])
        assert json.loads(line["record_json"])["resourceType"] == "AuditEvent"
        previous = line["record_hash"]
    signatures = set()
    for line in lines:  # each line: its covering checkpoint, checked with the trusted key
        # export signs the head first, so the records after the last periodic checkpoint are covered too
        covering = min(-(-line["seq"] // CHECKPOINT_EVERY) * CHECKPOINT_EVERY, records)
        checkpoint = line["checkpoint"]
        assert checkpoint["seq"] == covering
        assert checkpoint["record_hash"] == lines[covering - 1]["record_hash"]
        assert checkpoint["key_id"] == key_id == key_id_of(key.public_key())
        assert base64.b64decode(checkpoint["public_key"]) == key.public_key().public_bytes_raw()
        message = checkpoint_message(seq=checkpoint["seq"], record_hash=checkpoint["record_hash"], key_id=key_id,
                                     signed_at=datetime.strptime(checkpoint["signed_at"], "%Y-%m-%dT%H:%M:%S.%fZ"))
        verify(public_key=key.public_key(), message=message, signature=base64.b64decode(checkpoint["signature"]))
        signatures.add(checkpoint["seq"])
    assert sorted(signatures) == [CHECKPOINT_EVERY * n for n in range(1, checkpoints + 1)] + [records]
    assert checkpoints >= 3 and records % CHECKPOINT_EVERY != 0


def test_export_syslog_is_rfc_5424_with_the_audit_event(checkpointed):
    records, _ = ledger_size(checkpointed)

    exported = cli(checkpointed, "audit", "export", "--format", "syslog")

    assert (exported.returncode, exported.stderr) == (0, "")
    lines = exported.stdout.splitlines()
    assert len(lines) == records
    syslog = re.compile(r'<(8[45])>1 (\S+) (\S+) epr-gateway - ATNA \[meta sequenceId="(\d+)"\] (\{.*\})')
    for seq, line in enumerate(lines, start=1):
        assert line.startswith("<") and " epr-gateway " in line
        priority, stamp, _host, sequence, body = syslog.fullmatch(line).groups()
        event = orjson.loads(body)
        assert event["resourceType"] == "AuditEvent"
        assert (int(sequence), stamp) == (seq, event["recorded"])
        assert priority == SYSLOG_PRIORITY[event["outcome"]]
    assert [line[:4] for line in lines].count("<84>") == 1  # the refused retrieve


def test_export_since_starts_at_the_first_record_of_that_moment(checkpointed):
    with checkpointed.runtime.engine.connect() as connection:
        middle = connection.execute(select(audit_record.c.recorded_at).where(
            audit_record.c.seq == seq_of(connection, "ITI-68", "ATC_DOC_READ"))).scalar_one()
        expected = connection.execute(select(audit_record.c.seq).where(audit_record.c.recorded_at >= middle)).all()
    first = min(row.seq for row in expected)

    since = cli(checkpointed, "audit", "export", "--since", middle.isoformat())
    future = cli(checkpointed, "audit", "export", "--since", "2999-01-01")

    assert (since.returncode, future.returncode, future.stdout) == (0, 0, "")
    seqs = [json.loads(line)["seq"] for line in since.stdout.splitlines()]
    assert seqs == list(range(first, first + len(seqs)))
    assert seqs[-1] == ledger_size(checkpointed)[0]


def test_export_refuses_an_unknown_format(checkpointed):
    refused = cli(checkpointed, "audit", "export", "--format", "csv")

    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "ndjson or syslog" in refused.stderr
