"""DEVELOPMENT PKI and the one TLS server configuration of the gateway.

Why: the gateway speaks HTTPS only, also in the embedded default, and mutual TLS is its
system-to-system alternative to tokens. A small local CA ("EPR Gateway DEVELOPMENT CA") lets a
laptop run the same TLS code as production: the server certificate for localhost, a client
certificate for mutual TLS, and `issue_client_certificate` for more clients. Production configures
its own certificate and client CA (`EPR_TLS_CERT`, `EPR_CLIENT_CA`); only `server_ssl_context` is
used there.

Certificates are renewed by `ensure_dev_pki` when missing, close to expiry, or not issued by the
current CA; the CA and existing keys are kept. Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevPki", "ensure_dev_pki", "issue_client_certificate", "server_ssl_context", "CA_COMMON_NAME"]

CA_COMMON_NAME = "EPR Gateway DEVELOPMENT CA"
CLIENT_COMMON_NAME = "epr-dev-client"
_ORGANISATION = "EPR Gateway DEVELOPMENT"
_CA_LIFETIME = dt.timedelta(days=3650)
_LEAF_LIFETIME = dt.timedelta(days=397)
_RENEW_BEFORE = dt.timedelta(days=30)
_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock differences between machines
# TLS 1.2 only: forward secrecy and AEAD. TLS 1.3 suites are all strong and stay OpenSSL's defaults.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True)
class DevPki:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def ensure_dev_pki(pki_dir: Path) -> DevPki:
    """Create what is missing (idempotent): CA, server certificate (localhost), client certificate."""
    pki_dir = Path(pki_dir)
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = DevPki(
        ca_cert=pki_dir / "dev-ca-DEVELOPMENT-ONLY.cert.pem", ca_key=pki_dir / "dev-ca-DEVELOPMENT-ONLY.key.pem",
        server_cert=pki_dir / "server.cert.pem", server_key=pki_dir / "server.key.pem",
        client_cert=pki_dir / "client.cert.pem", client_key=pki_dir / "client.key.pem",
    )
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        ca_key = _private_key(pki.ca_key, replace=True)
        _write_public(pki.ca_cert, _ca_certificate(ca_key))
    ca_key = _load_key(pki.ca_key)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    if _needs_certificate(pki.server_cert, ca_cert):
        key = _private_key(pki.server_key)
        _write_public(pki.server_cert, _leaf_certificate(
            ca_cert=ca_cert, ca_key=ca_key, public_key=key.public_key(), common_name="localhost",
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            names=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                   x509.IPAddress(ipaddress.ip_address("::1"))]))
    if _needs_certificate(pki.client_cert, ca_cert):
        key = _private_key(pki.client_key)
        _write_public(pki.client_cert, _leaf_certificate(
            ca_cert=ca_cert, ca_key=ca_key, public_key=key.public_key(), common_name=CLIENT_COMMON_NAME,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH, names=_client_names(CLIENT_COMMON_NAME)))
    return pki


def issue_client_certificate(pki: DevPki, common_name: str, out_dir: Path) -> tuple[Path, Path]:
    """A new key and client certificate (clientAuth) for `common_name`, signed by the development CA."""
    if not common_name or len(common_name) > 64 or not common_name.isprintable():
        raise ValueError("common_name must be 1 to 64 printable characters")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = "client-" + re.sub(r"[^A-Za-z0-9._-]", "_", common_name)
    cert_path, key_path = out_dir / f"{stem}.cert.pem", out_dir / f"{stem}.key.pem"
    key = _private_key(key_path, replace=True)
    certificate = _leaf_certificate(
        ca_cert=x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()), ca_key=_load_key(pki.ca_key),
        public_key=key.public_key(), common_name=common_name, usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        names=_client_names(common_name))
    _write_public(cert_path, certificate)
    return cert_path, key_path


def server_ssl_context(cert: Path, key: Path, client_ca: Path | None = None,
                       require_client_cert: bool = False) -> ssl.SSLContext:
    """TLS 1.2 (ECDHE + AES-GCM/ChaCha20 only) or 1.3; client certificates checked against `client_ca`:
    required when `require_client_cert`, else asked for and verified when offered."""
    if require_client_cert and client_ca is None:
        raise ValueError("require_client_cert needs client_ca: there is nothing to verify client certificates with")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE).not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf_certificate(*, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                      public_key: ec.EllipticCurvePublicKey, common_name: str, usage: x509.ObjectIdentifier,
                      names: list[x509.GeneralName]) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
                                 x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE).not_valid_after(now + _LEAF_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    return builder.add_extension(x509.SubjectAlternativeName(names), critical=False).sign(ca_key, hashes.SHA256())


def _client_names(common_name: str) -> list[x509.GeneralName]:
    # RFC 5280 profiles (and strict verifiers such as cryptography's) expect a subjectAltName on every
    # leaf; a client has no host name, so it gets a URN naming it. The gateway itself reads the subject.
    return [x509.UniformResourceIdentifier(f"urn:epr-gateway:client:{quote(common_name, safe='')}")]


def _needs_certificate(path: Path, ca_cert: x509.Certificate) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        certificate.verify_directly_issued_by(ca_cert)
    except (OSError, ValueError, TypeError, InvalidSignature):  # missing, unreadable, or from an earlier CA
        return True
    return certificate.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) < _RENEW_BEFORE


def _private_key(path: Path, *, replace: bool = False) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 key at `path`, created when missing (or always, with `replace`)."""
    if path.exists() and not replace:
        return _load_key(path)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return key


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    return key


def _write_private(path: Path, data: bytes) -> None:
    """Mode 0600 from the first byte; atomically replaces any previous file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


def _write_public(path: Path, certificate: x509.Certificate) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    os.replace(temporary, path)
