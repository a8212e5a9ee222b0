"""Key rotation while `epr-gateway serve` (two workers) answers a mixed load of provides, searches and
reads: `keys add`, `promote`, `rewrap`, `retire`, each while the load runs. Zero failed requests, every
read's bytes the ones provided, the rewrap backlog 0, the old key gone from the keyring and no stored data
key left under it, reads after the retire still succeed; and a backup taken before the rotation still
restores and checks out with the key set saved beside it (and not with today's)."""

from __future__ import annotations

import hashlib
import json

from adapters.cara.crypto import Keyring
from gateway.backup import sha256
from functional.serving import MixedLoad, ServingGateway, restored_env, sample



def test_rotation_under_a_mixed_load(tmp_path, capsys):
    keyring_path = tmp_path / "data" / "keyring.json"
    with ServingGateway(tmp_path / "data", workers=2, EPR_KEY_HEARTBEAT_SECONDS="0.5") as gateway:
        with MixedLoad(gateway) as load:
            load.wait_for(provided=6)
            gateway.cli("backup", "--to", str(tmp_path / "before"), "--keys-to", str(tmp_path / "before-keys"))
            old = Keyring.load(keyring_path).active_key_id

            gateway.cli("keys", "add")
            new = Keyring.load(keyring_path).key_ids[-1]
            promoted = gateway.cli("keys", "promote", new, "--wait", "30")
            held = gateway.scrape()  # every live worker holds the new key, and wraps under it once re-read
            load.wait_for(provided=len(load.provided) + 3)
            rewrapped = gateway.cli("keys", "rewrap", "--wait", "30", "--batch", "50")
            retired = gateway.cli("keys", "retire", old, "--wait", "30")
            load.wait_for(provided=len(load.provided) + 6)  # provides and reads after the retire
        status = gateway.cli("keys", "status")
        live_check = gateway.cli("check-restore")  # every stored value opens under today's key set alone
        with gateway.client() as client:
            headers = gateway.hcp()
            reads = [(client.get(f"/fhir/Binary/{entry}", headers=headers), digest)
                     for entry, digest, _ in load.provided]

    assert load.failures == [] and load.requests > 40
    assert all(r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == d for r, d in reads)
    assert promoted.returncode == 0 and sample(held, "epr_key_holders", key=new, use="held") == 2
    assert rewrapped.stdout.rstrip().endswith("backlog 0"), rewrapped.stdout
    assert retired.returncode == 0 and Keyring.load(keyring_path).key_ids == [new]
    assert f"active {new}" in status.stdout and status.stdout.rstrip().endswith("backlog 0")
    assert "0 do not open or differ" in live_check.stdout and "0 do not unwrap" in live_check.stdout

    # the backup of before the rotation: its data keys are under the old key, which its key set holds
    restored = gateway.cli("restore", "--from", str(tmp_path / "before"), "--keys-from", str(tmp_path / "before-keys"),
                           "--data-dir", str(tmp_path / "restored"))
    checked = gateway.cli("check-restore", **restored_env(tmp_path / "restored"))
    today = tmp_path / "today-keys"  # today's key set, saved as `backup --keys-to` saves one
    today.mkdir()
    (today / "keyring.json").write_bytes(keyring_path.read_bytes())
    (today / "manifest.json").write_text(json.dumps({"files": {"keyring.json": sha256(today / "keyring.json")},
                                                     "key_ids": [new]}))
    without_old = gateway.cli("restore", "--from", str(tmp_path / "before"), "--keys-from", str(today),
                              "--data-dir", str(tmp_path / "restored-2"), check=False)

    assert restored.returncode == 0 and "restore checks out" in checked.stdout, checked.stdout + checked.stderr
    assert without_old.returncode == 1 and f"lacks {old}" in without_old.stderr
    with capsys.disabled():
        print(f"\nrotation under load: {load.requests} requests, 0 failed; {rewrapped.stdout.strip()}")
