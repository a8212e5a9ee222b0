"""Development PKI: the chain verifies under a strict RFC 5280 verifier, usages are right, keys are
private, and the TLS server context accepts exactly the clients the CA vouches for."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store

from gateway.pki import DevPki, ensure_dev_pki, issue_client_certificate, server_ssl_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    return ensure_dev_pki(tmp_path_factory.mktemp("pki"))


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def extension(certificate: x509.Certificate, kind):
    return certificate.extensions.get_extension_for_class(kind).value


def common_name(certificate: x509.Certificate) -> str:
    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_ca(pki):
    ca = load(pki.ca_cert)
    constraints, usage = extension(ca, x509.BasicConstraints), extension(ca, x509.KeyUsage)
    assert (common_name(ca), ca.subject == ca.issuer, constraints.ca, usage.key_cert_sign, usage.digital_signature) == (
        "EPR Gateway DEVELOPMENT CA", True, True, True, False)


@pytest.mark.parametrize("name", [DNSName("localhost"), IPAddress(ipaddress.ip_address("127.0.0.1")),
                                  IPAddress(ipaddress.ip_address("::1"))], ids=["localhost", "ipv4", "ipv6"])
def test_server_chain_verifies(pki, name):
    chain = PolicyBuilder().store(Store([load(pki.ca_cert)])).build_server_verifier(name).verify(
        load(pki.server_cert), [])
    assert [common_name(c) for c in chain] == ["localhost", "EPR Gateway DEVELOPMENT CA"]


def test_server_certificate_names_and_usage(pki):
    server = load(pki.server_cert)
    names = extension(server, x509.SubjectAlternativeName)
    assert (common_name(server), names.get_values_for_type(x509.DNSName),
            names.get_values_for_type(x509.IPAddress), list(extension(server, x509.ExtendedKeyUsage))) == (
        "localhost", ["localhost"], [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")],
        [ExtendedKeyUsageOID.SERVER_AUTH])


def test_client_certificate_chain_and_usage(pki):
    client = load(pki.client_cert)
    verified = PolicyBuilder().store(Store([load(pki.ca_cert)])).build_client_verifier().verify(client, [])
    assert ([common_name(c) for c in verified.chain], list(extension(client, x509.ExtendedKeyUsage))) == (
        ["epr-dev-client", "EPR Gateway DEVELOPMENT CA"], [ExtendedKeyUsageOID.CLIENT_AUTH])


def test_server_certificate_is_not_a_client_certificate(pki):
    with pytest.raises(x509.verification.VerificationError):
        PolicyBuilder().store(Store([load(pki.ca_cert)])).build_client_verifier().verify(load(pki.server_cert), [])


def test_private_keys_are_owner_only(pki):
    assert {stat.S_IMODE(p.stat().st_mode) for p in (pki.ca_key, pki.server_key, pki.client_key)} == {0o600}


def test_second_call_changes_nothing(pki):
    before = {p: p.read_bytes() for p in vars(pki).values()}
    again = ensure_dev_pki(pki.ca_cert.parent)
    assert (again, {p: p.read_bytes() for p in vars(again).values()}) == (pki, before)


def test_missing_server_certificate_is_reissued_by_the_same_ca(tmp_path):
    pki = ensure_dev_pki(tmp_path)
    ca = pki.ca_cert.read_bytes()
    pki.server_cert.unlink()
    ensure_dev_pki(tmp_path)
    load(pki.server_cert).verify_directly_issued_by(load(pki.ca_cert))
    assert pki.ca_cert.read_bytes() == ca


def test_issue_client_certificate(pki, tmp_path):
    cert_path, key_path = issue_client_certificate(pki, "Hôpital du Valais / bridge", tmp_path)
    client = load(cert_path)
    verified = PolicyBuilder().store(Store([load(pki.ca_cert)])).build_client_verifier().verify(client, [])
    assert (common_name(verified.chain[0]), list(extension(client, x509.ExtendedKeyUsage)),
            stat.S_IMODE(key_path.stat().st_mode), cert_path.name) == (
        "Hôpital du Valais / bridge", [ExtendedKeyUsageOID.CLIENT_AUTH], 0o600,
        "client-H_pital_du_Valais___bridge.cert.pem")


# --- the TLS server context ----------------------------------------------------------------------

def handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> tuple[object, object]:
    """TLS over a socket pair; returns (server result, client result): the peer certificate's
    subject or the exception each side saw."""
    server_side, client_side = socket.socketpair()
    server_side.settimeout(5)
    client_side.settimeout(5)
    results: dict[str, object] = {}

    def serve() -> None:
        try:
            with server_context.wrap_socket(server_side, server_side=True) as tls:
                results["server"] = dict(rdn[0] for rdn in (tls.getpeercert() or {}).get("subject", ()))
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            results["server"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_context.wrap_socket(client_side, server_hostname="localhost") as tls:
            results["client"] = tls.recv(2)
    except (ssl.SSLError, OSError) as exc:
        results["client"] = exc
    thread.join(10)
    return results["server"], results["client"]


def client_context(pki: DevPki, *, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if with_certificate:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


def test_mutual_tls_accepts_a_client_of_the_ca(pki):
    server = server_ssl_context(pki.server_cert, pki.server_key, pki.ca_cert, True)
    assert handshake(server, client_context(pki, with_certificate=True)) == (
        {"organizationName": "EPR Gateway DEVELOPMENT", "commonName": "epr-dev-client"}, b"ok")


def test_mutual_tls_refuses_a_client_without_certificate(pki):
    server = server_ssl_context(pki.server_cert, pki.server_key, pki.ca_cert, True)
    server_result, _ = handshake(server, client_context(pki, with_certificate=False))
    assert isinstance(server_result, ssl.SSLError)


def test_optional_client_certificate(pki):
    server = server_ssl_context(pki.server_cert, pki.server_key, pki.ca_cert, False)
    assert handshake(server, client_context(pki, with_certificate=False)) == ({}, b"ok")


def test_client_certificate_from_another_ca_is_refused(pki, tmp_path):
    other = ensure_dev_pki(tmp_path / "other")
    server = server_ssl_context(pki.server_cert, pki.server_key, pki.ca_cert, False)
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(other.client_cert), str(other.client_key))
    server_result, _ = handshake(server, context)
    assert isinstance(server_result, ssl.SSLError)


def test_protocol_floor_and_ciphers(pki):
    context = server_ssl_context(pki.server_cert, pki.server_key, None, False)
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert (context.minimum_version, context.verify_mode, all("ECDHE" in n and ("GCM" in n or "CHACHA20" in n)
                                                              for n in tls12), bool(tls12)) == (
        ssl.TLSVersion.TLSv1_2, ssl.CERT_NONE, True, True)


def test_requiring_client_certificates_needs_a_ca(pki):
    with pytest.raises(ValueError, match="require_client_cert needs client_ca"):
        server_ssl_context(pki.server_cert, pki.server_key, None, True)
