"""Policies read fresh from the store (a batch of the migration or the bridge) are decrypted only when
their stored bytes are new to this process: a change made anywhere, by this store or another process's,
is read as changed at once, and an unchanged policy is not decrypted again for every batch."""

import pytest

from adapters.cara.crypto import DecryptionFailed
from conftest import make_settings, sqlite_url
from consent.policies import Policy
from consent.store import DatabasePolicyStore
from gateway.first_start import prepare
from gateway.wiring import build_runtime
from unit.gateway.exchanges.exchange_world import feed

SPID = "761337610411353650"


class CountingKeyring:
    """The runtime's keyring, counting what is decrypted."""

    def __init__(self, keyring):
        self._keyring = keyring
        self.opened = 0

    def seal(self, plaintext, context):
        return self._keyring.seal(plaintext, context)

    def open(self, sealed, context):
        self.opened += 1
        return self._keyring.open(sealed, context)


@pytest.fixture
def runtime(tmp_path):
    built = build_runtime(prepare(make_settings(tmp_path / "data", sqlite_url(tmp_path))).settings)
    yield built
    built.close()


def grant(rule: str) -> Policy:
    return Policy(policy_set_id="urn:uuid:5b2f0c4e-7a52-4a37-9f0e-2c1b4f6a8d10", template=301,
                  patient_spid=SPID, rule=rule, subject_id="7601000000005")


def test_an_unchanged_policy_is_decrypted_once_and_a_change_is_read_at_once(runtime):
    PID = feed(runtime.services, spid=SPID, local_id="L-1", family="Muster")
    keyring = CountingKeyring(runtime.keyring)
    reader = DatabasePolicyStore(engine=runtime.engine, keyring=keyring)
    writer = DatabasePolicyStore(engine=runtime.engine, keyring=runtime.keyring)  # another process, say
    with runtime.engine.begin() as connection:
        writer.put(connection, grant("urn:e-health-suisse:2015:policies:access-level:normal"), pid=PID)

    first = reader.policies_for_many([PID])
    again = reader.policies_for_many([PID])
    assert first == again == {PID: [grant("urn:e-health-suisse:2015:policies:access-level:normal")]}
    assert keyring.opened == 1

    with runtime.engine.begin() as connection:  # the patient changes the grant elsewhere
        writer.put(connection, grant("urn:e-health-suisse:2015:policies:access-level:restricted"), pid=PID)
    assert reader.policies_for_many([PID]) == {
        PID: [grant("urn:e-health-suisse:2015:policies:access-level:restricted")]}
    assert reader.policies_for(PID) == [grant("urn:e-health-suisse:2015:policies:access-level:restricted")]
    assert keyring.opened == 2

    with runtime.engine.begin() as connection:  # and revokes it: nothing is left to read
        writer.remove(connection, grant("").policy_set_id)
    assert reader.policies_for_many([PID]) == {PID: []}


def test_the_same_bytes_under_another_patient_are_not_taken_for_its_policy(runtime):
    """What was opened is remembered with the context it was opened under (the policy and its patient)."""
    PID = feed(runtime.services, spid=SPID, local_id="L-1", family="Muster")
    other = feed(runtime.services, spid="761337610411353667", local_id="L-2", family="Favre")
    keyring = CountingKeyring(runtime.keyring)
    store = DatabasePolicyStore(engine=runtime.engine, keyring=keyring)
    with runtime.engine.begin() as connection:
        store.put(connection, grant("urn:e-health-suisse:2015:policies:access-level:normal"), pid=PID)
    assert store.policies_for(PID)
    with runtime.engine.begin() as connection:  # the row moved to another patient, bytes unchanged
        connection.exec_driver_sql("UPDATE consent_policy SET patient_pid = ?", (other,))
    with pytest.raises(DecryptionFailed):
        store.policies_for(other)  # sealed for PID: it does not open for another patient
    assert keyring.opened == 2
