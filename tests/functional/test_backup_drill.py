"""The embedded default's backup drill, as the README tells an operator to run it: `backup` while the
gateway serves a mixed load, `restore` into a new data directory, `check-restore`, then the restored
gateway serves every document acknowledged before the backup began, byte for byte. RPO and RTO printed.
And what must be refused: a damaged backup, a key set that is not the backup's, keys beside the data,
a restore whose documents do not open."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time

import pytest
from typer.testing import CliRunner

from adapters.cara.crypto import Keyring
from conftest import SPID, running_gateway, sqlite_url
from functional.serving import MixedLoad, ServingGateway, restored_env
from gateway.backup import sha256
from gateway.cli import app
from gateway.samples import pdf_document, provide_bundle



def test_backup_while_serving_restore_check_and_serve_again(tmp_path, capsys):
    backup_dir, keys_dir, new_dir = tmp_path / "backup", tmp_path / "keys", tmp_path / "restored"
    with ServingGateway(tmp_path / "data", workers=2) as gateway:
        with MixedLoad(gateway) as load:
            load.wait_for(provided=6)
            began = time.time()
            backed_up = gateway.cli("backup", "--to", str(backup_dir), "--keys-to", str(keys_dir))
            ended = time.time()
            load.wait_for(provided=len(load.provided) + 3)  # the gateway kept serving
        acknowledged_before = [(e, d) for e, d, at in load.provided if at < began]
        after_backup = [(e, d) for e, d, at in load.provided if at > ended]

    restore_started = time.monotonic()
    restored = gateway.cli("restore", "--from", str(backup_dir), "--keys-from", str(keys_dir),
                           "--data-dir", str(new_dir))
    checked = gateway.cli("check-restore", **restored_env(new_dir))
    rto = time.monotonic() - restore_started
    # served on another port than the original: the tokens' audience is this one's (EPR_AUDIENCE)
    serving_env = {k: v for k, v in restored_env(new_dir).items() if k != "EPR_AUDIENCE"}
    with ServingGateway(new_dir, workers=1, **serving_env) as again:
        with again.client() as client:
            reads = {entry: client.get(f"/fhir/Binary/{entry}", headers=again.hcp())
                     for entry, _ in acknowledged_before + after_backup}

    assert load.failures == [] and load.requests > 20
    assert "backup of the sqlite store" in backed_up.stdout and (keys_dir / "keyring.json").exists()
    assert f"restored into {new_dir}" in restored.stdout
    assert not (backup_dir / "keyring.json").exists()  # the keys are not in the data's archive
    assert "restore checks out" in checked.stdout and "as the backup's manifest says" in checked.stdout
    assert "0 do not open or differ" in checked.stdout and "0 do not unwrap" in checked.stdout
    assert acknowledged_before, "the load had provided documents before the backup"
    for entry, digest in acknowledged_before:  # RPO: nothing acknowledged before the backup is lost
        assert reads[entry].status_code == 200 and hashlib.sha256(reads[entry].content).hexdigest() == digest
    assert {reads[entry].status_code for entry, _ in after_backup} == {404}  # after it: beyond the recovery point
    recovery = checked.stdout.split("recovery point: ")[1].splitlines()[0]
    with capsys.disabled():
        print(f"\nSQLite drill: backup {ended - began:.1f} s while serving; recovery point {recovery}; "
              f"RPO = time since the backup ({len(after_backup)} documents provided after it); RTO {rto:.1f} s "
              "(restore + check-restore)")


@pytest.fixture
def backed_up(tmp_path, monkeypatch):
    """A gateway with one document, backed up; the command line on its settings."""
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        gateway.register_patient()
        gateway.provide(provide_bundle(spid=SPID, documents=[{"title": "L", "content": pdf_document("L", ["x"])}]))
        settings = gateway.runtime.settings
        for name, value in (("EPR_DATA_DIR", settings.data_dir), ("EPR_DATABASE_URL", settings.database_url),
                            ("EPR_DEMO_DATA", "false")):
            monkeypatch.setenv(name, str(value))
        made = CliRunner().invoke(app, ["backup", "--to", str(tmp_path / "b"), "--keys-to", str(tmp_path / "k")])
        assert made.exit_code == 0, made.output
    return tmp_path


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_a_damaged_backup_is_refused(backed_up):
    with open(backed_up / "b" / "gateway.sqlite3", "r+b") as damaged:
        damaged.seek(4096)
        damaged.write(b"\x00" * 16)

    refused = cli("restore", "--from", str(backed_up / "b"), "--keys-from", str(backed_up / "k"),
                  "--data-dir", str(backed_up / "new"))

    assert refused.exit_code == 1 and "gateway.sqlite3 is missing or not the file backed up" in refused.output
    assert not (backed_up / "new").exists()


def test_a_key_set_that_is_not_the_backups_is_refused(backed_up):
    other = backed_up / "other-keys"  # another gateway's key set, itself intact
    other.mkdir()
    Keyring.create_file(other / "keyring.json")
    (other / "manifest.json").write_text(json.dumps({"files": {"keyring.json": sha256(other / "keyring.json")},
                                                     "key_ids": Keyring.load(other / "keyring.json").key_ids}))
    needed = Keyring.load(backed_up / "k" / "keyring.json").active_key_id

    refused = cli("restore", "--from", str(backed_up / "b"), "--keys-from", str(other), "--data-dir",
                  str(backed_up / "new"))

    assert refused.exit_code == 1 and f"lacks {needed}" in refused.output
    assert not (backed_up / "new").exists()


def test_keys_beside_the_data_are_refused(backed_up):
    refused = cli("backup", "--to", str(backed_up / "b2"), "--keys-to", str(backed_up / "b2" / "keys"))
    without = cli("backup", "--to", str(backed_up / "b3"))

    assert refused.exit_code == 1 and "keys and data never in one archive" in refused.output
    assert without.exit_code == 2 and "--no-keys" in without.output


def test_a_restore_whose_documents_do_not_open_does_not_check_out(backed_up, monkeypatch):
    restored = cli("restore", "--from", str(backed_up / "b"), "--keys-from", str(backed_up / "k"),
                   "--data-dir", str(backed_up / "new"))
    assert restored.exit_code == 0, restored.output
    for name, value in restored_env(backed_up / "new").items():
        monkeypatch.setenv(name, value)
    database = sqlite3.connect(backed_up / "new" / "gateway.sqlite3")
    (entry_id, sealed), = database.execute("SELECT entry_id, sealed FROM document_body").fetchall()
    flipped = sealed[:20] + bytes([sealed[20] ^ 1]) + sealed[21:]  # one bit of the ciphertext
    database.execute("UPDATE document_body SET sealed = ? WHERE entry_id = ?", (flipped, entry_id))
    database.commit()
    database.close()

    checked = cli("check-restore")

    assert checked.exit_code == 1
    assert "the content of document" in checked.output and "does not decrypt" in checked.output
    assert "RESTORE DOES NOT CHECK OUT" in checked.output
