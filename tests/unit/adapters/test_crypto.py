"""Envelope encryption and keyed hashes (adapters.cara.crypto)."""

import json
import os

import pytest

from adapters.cara.crypto import DecryptionFailed, Keyring, KeyringError, Sealed


@pytest.fixture
def keyring_file(tmp_path):
    path = tmp_path / "keyring.json"
    Keyring.create_file(path)
    return path


def test_the_keyring_file_is_private_and_labelled_development(keyring_file):
    assert oct(os.stat(keyring_file).st_mode & 0o777) == "0o600"
    assert "DEVELOPMENT" in json.loads(keyring_file.read_text())["comment"]


def test_sealed_value_opens_only_under_its_own_context(keyring_file):
    ring = Keyring.load(keyring_file)
    sealed = ring.seal(b"secret letter", "entry-body|a|urn:oid:1.2")

    assert ring.open(sealed, "entry-body|a|urn:oid:1.2") == b"secret letter"
    with pytest.raises(DecryptionFailed):
        ring.open(sealed, "entry-body|b|urn:oid:1.2")


def test_each_seal_uses_its_own_data_key_and_nonce(keyring_file):
    ring = Keyring.load(keyring_file)
    first, second = ring.seal(b"same", "ctx"), ring.seal(b"same", "ctx")

    assert first.wrapped_key != second.wrapped_key
    assert first.ciphertext != second.ciphertext


def test_a_flipped_bit_in_the_ciphertext_or_wrapped_key_fails(keyring_file):
    ring = Keyring.load(keyring_file)
    sealed = ring.seal(b"payload", "ctx")
    flipped_body = Sealed(sealed.wrapped_key, sealed.ciphertext[:-1] + bytes([sealed.ciphertext[-1] ^ 1]))
    flipped_key = Sealed(sealed.wrapped_key[:-1] + bytes([sealed.wrapped_key[-1] ^ 1]), sealed.ciphertext)

    with pytest.raises(DecryptionFailed):
        ring.open(flipped_body, "ctx")
    with pytest.raises(DecryptionFailed):
        ring.open(flipped_key, "ctx")


def test_rotation_rewraps_and_old_and_new_keys_both_open(keyring_file):
    old_ring = Keyring.load(keyring_file)
    sealed = old_ring.seal(b"kept", "ctx")
    new_id = Keyring.add_key_to_file(keyring_file)
    new_ring = Keyring.load(keyring_file)

    rewrapped = Sealed(new_ring.rewrap(sealed.wrapped_key), sealed.ciphertext)

    assert new_ring.active_key_id == new_id
    assert rewrapped.key_id == new_id
    assert new_ring.open(sealed, "ctx") == b"kept"
    assert new_ring.open(rewrapped, "ctx") == b"kept"
    # a process that loaded the ring before the rotation follows the file when it meets the new key
    assert old_ring.open(rewrapped, "ctx") == b"kept"


def test_a_key_missing_from_the_ring_is_a_decryption_failure(tmp_path, keyring_file):
    other = tmp_path / "other.json"
    Keyring.create_file(other)
    sealed = Keyring.load(other).seal(b"x", "ctx")

    with pytest.raises(DecryptionFailed, match="not in the keyring"):
        Keyring.load(keyring_file).open(sealed, "ctx")


def test_index_hash_is_keyed_deterministic_and_kind_separated(tmp_path, keyring_file):
    other = tmp_path / "other.json"
    Keyring.create_file(other)
    ring = Keyring.load(keyring_file)

    assert ring.index_hash("spid", "761337610411353650") == ring.index_hash("spid", "761337610411353650")
    assert ring.index_hash("spid", "761337610411353650") != ring.index_hash("pid", "761337610411353650")
    assert ring.index_hash("spid", "761337610411353650") != Keyring.load(other).index_hash("spid", "761337610411353650")


@pytest.mark.parametrize("content", ["", "{}", '{"keys": [], "index_key": "AAAA"}', "not json"])
def test_a_malformed_or_empty_keyring_is_refused(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)

    with pytest.raises(KeyringError):
        Keyring.load(path)


def test_a_mac_verifies_for_its_purpose_and_message_only(keyring_file):
    ring = Keyring.load(keyring_file)
    tag = ring.mac("paging-cursor", b"position")

    assert len(tag) == 16 and ring.verify_mac("paging-cursor", b"position", tag)
    assert not ring.verify_mac("paging-cursor-binding", b"position", tag)
    assert not ring.verify_mac("paging-cursor", b"positioN", tag)
    assert tag.hex() not in ring.index_hash("paging-cursor", "position")  # not an index hash either
    assert Keyring.load(keyring_file).mac("paging-cursor", b"position") == tag  # the same in every process
