"""`epr-gateway audit verify` against the witness, as an operator runs it after a gateway served real
exchanges: a cut back to an earlier head (later records and checkpoints deleted, the old head put
back) passes the database alone and is named with the witness, the gateway's own or `--witness FILE`
kept elsewhere."""

from __future__ import annotations

import shutil
import time

from sqlalchemy import delete, insert, select

from audit.schema import audit_checkpoint, audit_head, audit_record
from conftest import running_gateway, sqlite_url
from functional.test_audit_cli import cli, exchanges


def wait_for_witness(gateway, seq: int, seconds: float = 10.0) -> list[str]:
    """The witness writer appends within its interval (1 s by default) of a commit."""
    path = gateway.runtime.settings.audit_witness_path
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and f'"seq":{seq},' in path.read_text():
            return path.read_text().splitlines()
        time.sleep(0.05)
    raise AssertionError(f"the witness did not reach {seq}")


def test_verify_names_a_cut_that_the_database_alone_cannot_see(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), audit_checkpoint_every=3) as gateway:
        gateway.register_patient()
        engine = gateway.runtime.engine
        with engine.connect() as connection:
            cut_at = connection.execute(select(audit_head.c.seq)).scalar_one()
            kept_head = connection.execute(select(audit_head.c.seq, audit_head.c.record_hash, audit_head.c.signed_at,
                                                  audit_head.c.key_id, audit_head.c.signature)).one()
        exchanges(gateway)
        with engine.connect() as connection:
            last = connection.execute(select(audit_head.c.seq)).scalar_one()
        wait_for_witness(gateway, last)
        elsewhere = tmp_path / "copied-witness.jsonl"
        shutil.copy(gateway.runtime.settings.audit_witness_path, elsewhere)

        intact = cli(gateway, "audit", "verify")
        with engine.begin() as connection:  # the attack: back to the head seen at `cut_at`
            connection.execute(delete(audit_record).where(audit_record.c.seq > cut_at))
            connection.execute(delete(audit_checkpoint).where(audit_checkpoint.c.seq > cut_at))
            connection.execute(delete(audit_head))
            connection.execute(insert(audit_head).values(id=1, **kept_head._asdict()))
        database_alone = cli(gateway, "audit", "verify", "--no-witness")
        with_copy = cli(gateway, "audit", "verify", "--witness", str(elsewhere))
        with_own = cli(gateway, "audit", "verify")
        missing = cli(gateway, "audit", "verify", "--witness", str(tmp_path / "nowhere.jsonl"))

    assert cut_at < last
    assert (intact.returncode, intact.stderr) == (0, "")
    assert intact.stdout.endswith(f"signed head at {last}, witness at {last}\n")
    assert (database_alone.returncode, database_alone.stderr) == (0, "")
    for refused in (with_copy, with_own):
        assert refused.returncode == 1
        assert f"the ledger was cut back: it ends at {cut_at} but the witness holds a head signed at " in refused.stderr
        assert refused.stderr.endswith(f"covering record {last} (records {cut_at + 1}-{last} deleted)\n")
    assert missing.returncode == 1
    assert "nowhere.jsonl does not exist" in missing.stderr
