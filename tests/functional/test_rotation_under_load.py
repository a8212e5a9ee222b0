"""Key rotation while `epr-gateway serve` (two workers) answers a mixed load of provides, searches and
reads: `keys add`, `promote`, `rewrap`, `retire`, each while the load runs. Zero failed requests, no 5xx
in the metrics, no decryption failure in the workers' log, every read's bytes the ones provided, the
rewrap backlog 0, the old key gone from the keyring and no stored data key left under it, reads after the
retire still succeed. On the embedded default and on PostgreSQL + Redis (the production shape: the rewrap
competes with the workers' writes in a database of its own kind). On the embedded default, a backup taken
before the rotation still restores and checks out with the key set saved beside it (and not with today's);
on PostgreSQL that is the pgBackRest drill's matter (`test_postgres_backup_drill.py`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.cara.crypto import Keyring
from conftest import fresh_postgres_url
from gateway.backup import sha256
from functional.serving import MixedLoad, ServingGateway, restored_env, sample

# What the log shows when a stored value does not open (`sealed_entries.py`, `crypto.py`).
DECRYPTION_FAILURES = ("does not decrypt", "IntegrityFailure", "DecryptionFailed", "not in the keyring")


@dataclass
class Rotation:
    old: str
    new: str
    load: MixedLoad
    steps: dict  # step name -> CompletedProcess
    held: dict  # the scrape once the new key was promoted
    answered: dict  # the scrape at the end: every request of the load, by status


def rotate_under_load(gateway: ServingGateway, keyring_path: Path, before_rotation=lambda: None) -> Rotation:
    with MixedLoad(gateway) as load:
        load.wait_for(provided=6)
        before_rotation()
        old = Keyring.load(keyring_path).active_key_id
        steps = {"add": gateway.cli("keys", "add")}
        new = Keyring.load(keyring_path).key_ids[-1]
        steps["promote"] = gateway.cli("keys", "promote", new, "--wait", "30")
        held = gateway.scrape()  # every live worker holds the new key, and wraps under it once re-read
        load.wait_for(provided=len(load.provided) + 3)
        steps["rewrap"] = gateway.cli("keys", "rewrap", "--wait", "30", "--batch", "50")
        steps["retire"] = gateway.cli("keys", "retire", old, "--wait", "30")
        load.wait_for(provided=len(load.provided) + 6)  # provides and reads after the retire
    steps["status"] = gateway.cli("keys", "status")
    steps["check"] = gateway.cli("check-restore")  # every stored value opens under today's key set alone
    return Rotation(old=old, new=new, load=load, steps=steps, held=held, answered=gateway.scrape())


def assert_rotated_without_a_failure(gateway: ServingGateway, keyring_path: Path, rotation: Rotation) -> None:
    with gateway.client() as client:
        headers = gateway.hcp()
        reads = [(client.get(f"/fhir/Binary/{entry}", headers=headers), digest)
                 for entry, digest, _ in rotation.load.provided]
    steps, new = rotation.steps, rotation.new
    server_errors = sum(value for (name, labels), value in rotation.answered.items()
                        if name == "epr_http_requests_total" and dict(labels)["status"].startswith("5"))
    log = gateway.log.read_text(errors="replace")

    assert rotation.load.failures == [] and rotation.load.requests > 40
    assert server_errors == 0
    assert not [marker for marker in DECRYPTION_FAILURES if marker in log], log[-3000:]
    assert all(r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == d for r, d in reads)
    assert steps["promote"].returncode == 0 and sample(rotation.held, "epr_key_holders", key=new, use="held") == 2
    assert steps["rewrap"].stdout.rstrip().endswith("backlog 0"), steps["rewrap"].stdout
    assert steps["retire"].returncode == 0 and Keyring.load(keyring_path).key_ids == [new]
    assert f"active {new}" in steps["status"].stdout and steps["status"].stdout.rstrip().endswith("backlog 0")
    assert "0 do not open or differ" in steps["check"].stdout and "0 do not unwrap" in steps["check"].stdout


def test_rotation_under_a_mixed_load(tmp_path, capsys):
    keyring_path = tmp_path / "data" / "keyring.json"
    with ServingGateway(tmp_path / "data", workers=2, EPR_KEY_HEARTBEAT_SECONDS="1") as gateway:
        rotation = rotate_under_load(gateway, keyring_path, before_rotation=lambda: gateway.cli(
            "backup", "--to", str(tmp_path / "before"), "--keys-to", str(tmp_path / "before-keys")))
        assert_rotated_without_a_failure(gateway, keyring_path, rotation)

    # the backup of before the rotation: its data keys are under the old key, which its key set holds
    restored = gateway.cli("restore", "--from", str(tmp_path / "before"), "--keys-from", str(tmp_path / "before-keys"),
                           "--data-dir", str(tmp_path / "restored"))
    checked = gateway.cli("check-restore", **restored_env(tmp_path / "restored"))
    today = tmp_path / "today-keys"  # today's key set, saved as `backup --keys-to` saves one
    today.mkdir()
    (today / "keyring.json").write_bytes(keyring_path.read_bytes())
    (today / "manifest.json").write_text(json.dumps({"files": {"keyring.json": sha256(today / "keyring.json")},
                                                     "key_ids": [rotation.new]}))
    without_old = gateway.cli("restore", "--from", str(tmp_path / "before"), "--keys-from", str(today),
                              "--data-dir", str(tmp_path / "restored-2"), check=False)

    assert restored.returncode == 0 and "restore checks out" in checked.stdout, checked.stdout + checked.stderr
    assert without_old.returncode == 1 and f"lacks {rotation.old}" in without_old.stderr
    with capsys.disabled():
        print(f"\nrotation under load (SQLite): {rotation.load.requests} requests, 0 failed; "
              f"{rotation.steps['rewrap'].stdout.strip()}")


@pytest.mark.postgres
def test_rotation_under_a_mixed_load_on_postgresql_and_redis(tmp_path, capsys):
    keyring_path = tmp_path / "data" / "keyring.json"
    production_shape = {"EPR_DATABASE_URL": fresh_postgres_url(), "EPR_REDIS_URL": os.environ["EPR_TEST_REDIS_URL"]}
    with ServingGateway(tmp_path / "data", workers=2, EPR_KEY_HEARTBEAT_SECONDS="1", **production_shape) as gateway:
        rotation = rotate_under_load(gateway, keyring_path)
        assert_rotated_without_a_failure(gateway, keyring_path, rotation)
    with capsys.disabled():
        print(f"\nrotation under load (PostgreSQL + Redis): {rotation.load.requests} requests, 0 failed; "
              f"{rotation.steps['rewrap'].stdout.strip()}")
