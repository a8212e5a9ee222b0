"""The audit ledger's cryptography, in one place: the chain hash, checkpoint signatures and the key.

Why this shape: the ledger's proof rests on two primitives, SHA-256 (each record hashes its
predecessor, so a change anywhere breaks every later link) and Ed25519 (a signed checkpoint pins the
chain head, so even someone who can rewrite the whole table cannot produce a head the key did not
sign). Domain code (`audit.ledger`, `audit.export`) calls the functions below and never touches a
primitive. Every failed verification raises the one exception `SignatureInvalid`.

The key: `load_signing_key` reads a PEM file that operations provide (production). The embedded
default uses `load_or_create_signing_key`, which generates a key once, mode 0600, and only under a
file name carrying DEVELOPMENT, so a generated key is never mistaken for a managed one.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DEVELOPMENT_KEY_NAME = "audit-signing-key.DEVELOPMENT.pem"
GENESIS_HASH = "0" * 64  # prev_hash of record 1
_KEY_ID_HEX = 16  # 64 bits of SHA-256(raw public key): plenty to tell a handful of keys apart
_CHECKPOINT_DOMAIN = b"epr-gateway audit checkpoint v1"


class SignatureInvalid(Exception):
    """A checkpoint signature does not verify under the given public key."""


class SigningKeyError(Exception):
    """The signing key file is missing, unreadable, not Ed25519, or may not be generated here."""


# -- the chain ---------------------------------------------------------------------------------
def chain_hash(*, prev_hash: str, seq: int, patient_key: str | None, record_json: str) -> str:
    """SHA-256 over the predecessor's hash, the position, the patient key and the canonical JSON.

    seq is inside the hash so that a record moved to another position no longer verifies; the
    patient key is inside so that re-pointing a record to another patient (hiding it from one trail,
    planting it in another) breaks the chain too. Fields are separated by a newline, which none of
    them can contain (hex, digits, an HMAC hex string, canonical JSON escapes newlines).
    """
    material = "\n".join((prev_hash, str(seq), patient_key or "", record_json))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


# -- checkpoints -------------------------------------------------------------------------------
def checkpoint_message(*, seq: int, record_hash: str, signed_at: datetime, key_id: str) -> bytes:
    """The exact bytes a checkpoint signature covers (also what an external verifier rebuilds)."""
    stamp = signed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return b"\n".join((_CHECKPOINT_DOMAIN, str(seq).encode(), record_hash.encode(), stamp.encode(),
                       key_id.encode()))


def sign(*, private_key: Ed25519PrivateKey, message: bytes) -> bytes:
    return private_key.sign(message)


class Signer:
    """Ed25519 signatures with one key, made by libsodium (PyNaCl). Why not `sign`: the ledger signs
    its head at every commit batch, on the path every answer waits for, and libsodium signs in clearly
    less time (figures in bench/README.md). Ed25519 is deterministic, so the
    signatures are the very bytes `sign` makes (a test holds both to it) and verify as before."""

    def __init__(self, private_key: Ed25519PrivateKey):
        seed = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                         serialization.NoEncryption())
        self._key = nacl.signing.SigningKey(seed)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


def verify(*, public_key: Ed25519PublicKey, message: bytes, signature: bytes) -> None:
    """Raise `SignatureInvalid` unless `signature` is the key's signature over `message`."""
    try:
        public_key.verify(signature, message)
    except InvalidSignature as error:
        raise SignatureInvalid("signature does not verify") from error


# -- keys --------------------------------------------------------------------------------------
def public_key_raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_raw(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The key id written beside each checkpoint: a hex prefix of SHA-256 of the raw public key, so
    anyone holding the public key can recompute it (no registry of ids needed)."""
    return hashlib.sha256(public_key_raw(public_key)).hexdigest()[:_KEY_ID_HEX]


def load_signing_key(path: Path) -> tuple[str, Ed25519PrivateKey]:
    """Read an unencrypted PKCS#8 PEM Ed25519 private key (production: provided by operations)."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise SigningKeyError(f"cannot read the audit signing key {path}: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"the audit signing key {path} is not an Ed25519 key")
    return key_id_of(key.public_key()), key


def load_or_create_signing_key(path: Path) -> tuple[str, Ed25519PrivateKey]:
    """The embedded default: generate the key on first start, then always load the same one.

    Only a file whose name contains DEVELOPMENT may be generated, so that a production setting
    pointing at a missing key file fails instead of silently signing with a fresh, unmanaged key.
    Written to a private temporary file (mode 0600) and published with a hard link, which fails if
    the name exists: a reader never sees a half-written key, and two workers starting together end
    up with one key.
    """
    path = Path(path)
    if path.exists():
        return load_signing_key(path)
    if "DEVELOPMENT" not in path.name:
        raise SigningKeyError(f"the audit signing key {path} does not exist (only a *DEVELOPMENT* key "
                              "file is generated automatically)")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:  # another worker won the race: use its key
            return load_signing_key(path)
    finally:
        temporary.unlink(missing_ok=True)
    return key_id_of(key.public_key()), key
