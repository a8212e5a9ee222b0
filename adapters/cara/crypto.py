"""Encryption at rest: envelope encryption under a rotating keyring, and keyed hashes for look-ups.

One way to use it: `Keyring.seal(plaintext, context)` gives a `Sealed` (a wrapped data key and a
ciphertext); `Keyring.open(sealed, context)` gives the plaintext back or raises `DecryptionFailed`.
`context` is bound as AES-GCM associated data, so a ciphertext moved to another row does not open.
Key-encryption keys form a list: the first wraps new data keys, all of them unwrap; rotation re-wraps
data keys and never touches ciphertexts. Domain code never sees a primitive.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12
_KEY_BYTES = 32
_WRAP_SEPARATOR = b":"
_RELOAD_SECONDS = 5.0


class DecryptionFailed(Exception):
    """A sealed value does not open: wrong context, unknown key, or changed bytes."""


class KeyringError(Exception):
    """The keyring file is missing, malformed or empty."""


@dataclass(frozen=True)
class Sealed:
    """`wrapped_key` = key id, nonce and the data key under that KEK; `ciphertext` = nonce + AES-GCM."""

    wrapped_key: bytes
    ciphertext: bytes

    @property
    def key_id(self) -> str:
        return self.wrapped_key.split(_WRAP_SEPARATOR, 1)[0].decode()


@dataclass(frozen=True)
class _Kek:
    key_id: str
    key: bytes


class Keyring:
    """Named key-encryption keys, the first active, plus the index key for keyed hashes."""

    def __init__(self, keys: list[tuple[str, bytes]], index_key: bytes, *, source: Path | None = None):
        self._source = source
        self._purpose_macs: dict[str, hmac.HMAC] = {}
        self._checked_at = time.monotonic()
        self._source_mtime = source.stat().st_mtime_ns if source else None
        self._install(keys, index_key)

    def _install(self, keys: list[tuple[str, bytes]], index_key: bytes) -> None:
        if not keys:
            raise KeyringError("the keyring holds no key-encryption key")
        if len(index_key) < _KEY_BYTES:
            raise KeyringError("the keyring's index key is shorter than 256 bits")
        for key_id, key in keys:
            if len(key) != _KEY_BYTES or _WRAP_SEPARATOR.decode() in key_id or not key_id:
                raise KeyringError(f"key {key_id!r} is not a named 256-bit key")
        if getattr(self, "_index_key", index_key) != index_key:
            raise KeyringError("the keyring's index key changed: keyed hashes would no longer match")
        # Assigned together as one tuple so that concurrent readers never see a half-updated ring.
        keks = [_Kek(key_id, key) for key_id, key in keys]
        self._ring = (keks, {k.key_id: AESGCM(k.key) for k in keks})
        self._index_key = index_key

    def refresh(self) -> None:
        """Re-read the file now if it changed (`keys add`, `promote`, `retire` run by another process): what
        the key heartbeat does before it reports the keys this process holds."""
        self._reload(force=True)

    def _reload(self, *, force: bool) -> None:
        """Follow `keys add|promote|retire` run by another process: re-read the file when it changed (checked
        at most every few seconds) or at once when a data key names a key this process does not know."""
        if self._source is None or (not force and time.monotonic() - self._checked_at < _RELOAD_SECONDS):
            return
        self._checked_at = time.monotonic()
        mtime = self._source.stat().st_mtime_ns
        if mtime != self._source_mtime:
            fresh = Keyring.load(self._source)
            self._install([(k.key_id, k.key) for k in fresh._ring[0]], fresh._index_key)
            self._source_mtime = mtime

    @property
    def active_key_id(self) -> str:
        return self._ring[0][0].key_id

    @property
    def key_ids(self) -> list[str]:
        return [k.key_id for k in self._ring[0]]

    # -- envelope -----------------------------------------------------------------------------
    def seal(self, plaintext: bytes, context: str) -> Sealed:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        ciphertext = nonce + AESGCM(data_key).encrypt(nonce, plaintext, context.encode())
        return Sealed(self._wrap(data_key), ciphertext)

    def open(self, sealed: Sealed, context: str) -> bytes:
        data_key = self._unwrap(sealed.wrapped_key)
        nonce, body = sealed.ciphertext[:_NONCE], sealed.ciphertext[_NONCE:]
        try:
            return AESGCM(data_key).decrypt(nonce, body, context.encode())
        except InvalidTag as exc:
            raise DecryptionFailed("ciphertext does not open under its context") from exc

    def check_unwraps(self, wrapped_key: bytes) -> None:
        """DecryptionFailed unless this keyring unwraps the data key (a restore's check of its key set)."""
        self._unwrap(wrapped_key)

    def rewrap(self, wrapped_key: bytes) -> bytes:
        """The same data key wrapped under the active KEK (key rotation)."""
        return self._wrap(self._unwrap(wrapped_key))

    def _wrap(self, data_key: bytes) -> bytes:
        self._reload(force=False)
        keks, by_id = self._ring
        kek = keks[0]
        nonce = os.urandom(_NONCE)
        wrapped = by_id[kek.key_id].encrypt(nonce, data_key, b"epr-data-key:" + kek.key_id.encode())
        return kek.key_id.encode() + _WRAP_SEPARATOR + nonce + wrapped

    def _unwrap(self, wrapped_key: bytes) -> bytes:
        key_id, _, rest = wrapped_key.partition(_WRAP_SEPARATOR)
        name = key_id.decode(errors="replace")
        if name not in self._ring[1]:
            self._reload(force=True)
        aead = self._ring[1].get(name)
        if aead is None:
            raise DecryptionFailed("data key wrapped under a key that is not in the keyring")
        try:
            return aead.decrypt(rest[:_NONCE], rest[_NONCE:], b"epr-data-key:" + key_id)
        except InvalidTag as exc:
            raise DecryptionFailed("data key does not unwrap") from exc

    # -- keyed hashes -------------------------------------------------------------------------
    def index_hash(self, kind: str, value: str) -> str:
        """Deterministic keyed hash for exact-match look-ups of values kept out of the clear."""
        return hmac.new(self._index_key, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()

    def mac(self, purpose: str, message: bytes) -> bytes:
        """A 128-bit tag over `message` under a key derived from the index key for `purpose` alone (a
        tag made for one purpose never verifies for another, nor collides with an index hash). The
        index key is not rotated, so a tag stays valid across `keys rotate` and in every worker."""
        keyed = self._purpose_macs.get(purpose)
        if keyed is None:  # keyed once per purpose; copying it skips re-keying on every tag
            key = hmac.new(self._index_key, b"epr-mac-key\x1f" + purpose.encode(), hashlib.sha256).digest()
            keyed = self._purpose_macs[purpose] = hmac.new(key, digestmod=hashlib.sha256)
        tagger = keyed.copy()
        tagger.update(message)
        return tagger.digest()[:16]

    def verify_mac(self, purpose: str, message: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(self.mac(purpose, message), tag)

    # -- file format --------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            data = json.loads(path.read_text())
            keys = [(k["id"], base64.b64decode(k["key"], validate=True)) for k in data["keys"]]
            index_key = base64.b64decode(data["index_key"], validate=True)
        except FileNotFoundError as exc:
            raise KeyringError(f"keyring file {path} does not exist") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"keyring file {path} is malformed") from exc
        return cls(keys, index_key, source=path)

    @staticmethod
    def create_file(path: Path) -> None:
        """A new keyring with one key: development default, generated on first start."""
        data = {
            "comment": "DEVELOPMENT keyring generated on first start. Production keys come from EPR_KEYRING.",
            "index_key": base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode(),
            "keys": [_new_key_entry()],
        }
        _write_private(path, data)

    @staticmethod
    def add_key_to_file(path: Path, *, active: bool = True) -> str:
        """A new key in the file, first (active at once) or, `active=False`, last: every process that
        reads the file can then unwrap with it before any data key is wrapped under it (`keys add`,
        then `keys promote` once every worker holds it). Returns its id."""
        data = json.loads(path.read_text())
        entry = _new_key_entry()
        data["keys"].insert(0 if active else len(data["keys"]), entry)
        _write_private(path, data)
        return entry["id"]

    @staticmethod
    def promote_in_file(path: Path, key_id: str) -> None:
        """Make `key_id` the active key (first): new data keys are wrapped under it."""
        data = json.loads(path.read_text())
        entry = _entry(data, key_id, path)
        data["keys"] = [entry] + [k for k in data["keys"] if k["id"] != key_id]
        _write_private(path, data)

    @staticmethod
    def retire_from_file(path: Path, key_id: str) -> None:
        """Remove `key_id`; never the active key (the caller first checks that no data key names it)."""
        data = json.loads(path.read_text())
        _entry(data, key_id, path)
        if data["keys"][0]["id"] == key_id:
            raise KeyringError(f"key {key_id} is the active key: promote another one first")
        data["keys"] = [k for k in data["keys"] if k["id"] != key_id]
        _write_private(path, data)


def _entry(data: dict, key_id: str, path: Path) -> dict:
    found = next((k for k in data["keys"] if k["id"] == key_id), None)
    if found is None:
        raise KeyringError(f"key {key_id!r} is not in the keyring file {path}")
    return found


def _new_key_entry() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "id": f"kek-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}",
        "created": now.isoformat(timespec="seconds"),
        "key": base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode(),
    }


def _write_private(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
