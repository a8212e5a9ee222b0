"""`epr-gateway keys add | promote | rewrap | retire | status | rotate` on a running gateway's store, with a
second node's worker (its own keyring file, its own heartbeat) that the new key has not reached yet: each
step that would make that worker fail refuses, naming it, until its file holds what the step needs."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from adapters.cara.crypto import Keyring
from adapters.cara.store.key_holders import KeyHeartbeat, KeyHolders
from conftest import SPID, running_gateway
from functional.helpers import document_ids
from gateway.cli import app
from gateway.samples import pdf_document, provide_bundle

# A process is live for three beats: 1 s beats leave a loaded machine (the whole suite on shared cores)
# 3 s before a late beat makes a worker look gone, and still let each step's --wait end within seconds.
BEAT = 1.0


def keys(*args: str):
    return CliRunner().invoke(app, ["keys", *args])


@pytest.fixture
def gateway_and_other_node(tmp_path, database_url, monkeypatch):
    with running_gateway(tmp_path, database_url, key_heartbeat_seconds=BEAT) as gateway:
        settings = gateway.runtime.settings
        for name, value in (("EPR_DATA_DIR", settings.data_dir), ("EPR_DATABASE_URL", settings.database_url),
                            ("EPR_KEY_HEARTBEAT_SECONDS", str(BEAT)), ("EPR_DEMO_DATA", "false")):
            monkeypatch.setenv(name, str(value))
        other_file = tmp_path / "other-node-keyring.json"  # the second node's copy, from its secret store
        shutil.copy(settings.keyring_path, other_file)
        other = KeyHeartbeat(keyring=Keyring.load(other_file), holders=KeyHolders(engine=gateway.runtime.engine),
                             interval_seconds=BEAT)
        other.holder = "other-node:4242"
        other.start()
        try:
            yield gateway, other_file
        finally:
            other.stop()


def test_each_step_waits_for_every_node_and_no_read_fails(gateway_and_other_node):
    gateway, other_file = gateway_and_other_node
    gateway.register_patient()
    entry = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["kept"])}])).json())[0]
    path = gateway.runtime.settings.keyring_path
    old = Keyring.load(path).active_key_id

    added = keys("add")
    new = Keyring.load(path).key_ids[-1]
    refused_promote = keys("promote", new)
    shutil.copy(path, other_file)  # the operator distributes the file to the other node
    promoted = keys("promote", new, "--wait", "30")
    refused_rewrap = keys("rewrap", "--wait", "0")  # the other node's file still names the old key active
    shutil.copy(path, other_file)
    refused_retire = keys("retire", old, "--wait", "10")  # every worker wraps under the new key; the rows don't
    rewrapped = keys("rewrap", "--wait", "30")
    status = keys("status")
    retired = keys("retire", old, "--wait", "30")
    read = gateway.client.get(f"/fhir/Binary/{entry}", headers=gateway.as_hcp())

    assert added.exit_code == 0 and f"added {new} (decrypt-only)" in added.output
    assert refused_promote.exit_code == 1
    assert f"other-node:4242 holds {old}" in refused_promote.output and "do not hold" in refused_promote.output
    assert promoted.exit_code == 0, promoted.output
    assert refused_rewrap.exit_code == 1 and "other-node:4242" in refused_rewrap.output
    assert refused_retire.exit_code == 1 and "still wrapped under" in refused_retire.output
    assert rewrapped.exit_code == 0 and rewrapped.output.rstrip().endswith("backlog 0"), rewrapped.output
    assert f"active {new}" in status.output and "backlog 0" in status.output
    assert retired.exit_code == 0, retired.output
    assert Keyring.load(path).key_ids == [new]
    assert read.status_code == 200 and b"kept" in read.content


def test_rotate_is_add_promote_rewrap_and_keeps_the_old_key_until_retired(tmp_path, database_url, monkeypatch):
    with running_gateway(tmp_path, database_url, key_heartbeat_seconds=BEAT) as gateway:
        settings = gateway.runtime.settings
        for name, value in (("EPR_DATA_DIR", settings.data_dir), ("EPR_DATABASE_URL", settings.database_url),
                            ("EPR_KEY_HEARTBEAT_SECONDS", str(BEAT))):
            monkeypatch.setenv(name, str(value))
        gateway.register_patient()
        old = Keyring.load(settings.keyring_path).active_key_id

        rotated = keys("rotate", "--wait", "10")  # this gateway's worker re-reads the file on its heartbeat
        ring = Keyring.load(settings.keyring_path)
        found = gateway.find()

    assert rotated.exit_code == 0, rotated.output
    assert ring.key_ids[1:] == [old] and "backlog 0" in rotated.output  # old: decrypt-only until retired
    assert found.status_code == 200
