"""The stub's key material: its TLS CA, server and source-client certificates, the technical user's
registered RSA certificate, and the STS's signing key.

Generated once per test session (RSA key generation is the slow part) and written into each stub's
folder, so every test gets files of its own. The TLS part reuses the gateway's development PKI
(`gateway.pki.ensure_dev_pki`: a CA, a server certificate for localhost/127.0.0.1, a clientAuth
certificate), which is the same TLS profile the gateway serves with.
"""

from __future__ import annotations

import datetime as dt
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.pki import ensure_dev_pki


@dataclass(frozen=True)
class StubKeys:
    ca_cert: Path            # the stub's CA: the client trusts it for the server, the server for clients
    server_cert: Path
    server_key: Path
    source_cert: Path         # the gateway-as-Document-Source's client certificate (mutual TLS)
    source_key: Path
    technical_user_cert: Path  # registered with the community together with the technical user's OID
    technical_user_key: Path
    sts_cert: Path            # signs the X-User Assertions the stub's STS issues
    sts_key: Path

    def technical_user_private_key(self) -> rsa.RSAPrivateKey:
        return _load_rsa(self.technical_user_key)

    def sts_private_key(self) -> rsa.RSAPrivateKey:
        return _load_rsa(self.sts_key)


@functools.cache
def _session_material() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="community-stub-keys-"))
    ensure_dev_pki(folder)
    for stem, common_name in (("technical-user", "tcu-community-stub-test"), ("sts", "sts.community-stub.test")):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (folder / f"{stem}.key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (folder / f"{stem}.cert.pem").write_bytes(
            _self_signed(key, common_name).public_bytes(serialization.Encoding.PEM))
    return folder


def write_keys(folder: Path) -> StubKeys:
    source = _session_material()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    names = {
        "ca_cert": "dev-ca-DEVELOPMENT-ONLY.cert.pem", "server_cert": "server.cert.pem",
        "server_key": "server.key.pem", "source_cert": "client.cert.pem", "source_key": "client.key.pem",
        "technical_user_cert": "technical-user.cert.pem", "technical_user_key": "technical-user.key.pem",
        "sts_cert": "sts.cert.pem", "sts_key": "sts.key.pem",
    }
    paths = {}
    for field, name in names.items():
        target = folder / name
        shutil.copyfile(source / name, target)
        target.chmod(0o600)
        paths[field] = target
    return StubKeys(**paths)


def load_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def _load_rsa(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _self_signed(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Community stub TEST"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
