"""The real server on loopback: TLS 1.2+ only, mutual TLS, and what reaches its log."""

import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.auth.dev_issuer import mint_token
from gateway.pki import ensure_dev_pki, issue_client_certificate

SPID = "761337610411353650"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, port: int, **env):
        self.data_dir, self.port = data_dir, port
        self.base = f"https://127.0.0.1:{port}"
        self.pki = ensure_dev_pki(data_dir / "pki")
        environment = {"EPR_DATA_DIR": str(data_dir), "EPR_PORT": str(port), "EPR_DEMO_DATA": "false",
                       "EPR_AUDIENCE": f"{self.base}/fhir", "PATH": "/usr/bin:/bin", **env}
        self.log = data_dir / "server.log"
        self.process = subprocess.Popen([sys.executable, "-c", "from gateway.cli import app; app()", "serve"],
                                        env=environment, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with httpx.Client(verify=self.client_context(with_certificate=True), timeout=2) as client:
                    if client.get(f"{self.base}/health/ready").status_code == 200:
                        return
            except httpx.HTTPError:
                time.sleep(0.2)
            assert self.process.poll() is None, self.log.read_text()
        raise AssertionError("the server did not become ready: " + self.log.read_text())

    def client_context(self, *, with_certificate: bool, maximum: ssl.TLSVersion | None = None,
                       minimum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if with_certificate:
            context.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
        if maximum:
            context.maximum_version = maximum
        if minimum:
            context.minimum_version = minimum
        return context

    def token(self, **claims) -> str:
        return mint_token(data_dir=self.data_dir, issuer_url=f"https://127.0.0.1:{self.port}/dev-issuer",
                          audience=f"{self.base}/fhir", **claims)

    def stop(self) -> str:
        self.process.terminate()
        self.process.wait(timeout=20)
        return self.log.read_text()


@pytest.fixture
def mtls_server(tmp_path):
    pki = ensure_dev_pki(tmp_path / "data" / "pki")
    server = Server(tmp_path / "data", free_port(), EPR_CLIENT_CA=str(pki.ca_cert), EPR_REQUIRE_CLIENT_CERT="true")
    yield server
    server.stop()


@pytest.fixture
def optional_mtls_server(tmp_path):
    pki = ensure_dev_pki(tmp_path / "data" / "pki")
    server = Server(tmp_path / "data", free_port(), EPR_CLIENT_CA=str(pki.ca_cert), EPR_REQUIRE_MTLS_FOR="TCU")
    yield server
    server.stop()


def handshake(server: Server, context: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version()


def test_tls_1_1_is_refused_and_1_2_and_1_3_are_accepted(mtls_server):
    legacy = mtls_server.client_context(with_certificate=True, maximum=ssl.TLSVersion.TLSv1_1)
    legacy.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    legacy.set_ciphers("ALL:@SECLEVEL=0")

    with pytest.raises(ssl.SSLError):
        handshake(mtls_server, legacy)
    tls12 = mtls_server.client_context(with_certificate=True, maximum=ssl.TLSVersion.TLSv1_2)
    tls13 = mtls_server.client_context(with_certificate=True, minimum=ssl.TLSVersion.TLSv1_3)
    assert handshake(mtls_server, tls12) == "TLSv1.2"
    assert handshake(mtls_server, tls13) == "TLSv1.3"


def test_client_without_certificate_is_refused_when_mtls_is_required(mtls_server):
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        with httpx.Client(verify=mtls_server.client_context(with_certificate=False), timeout=5) as client:
            client.get(f"{mtls_server.base}/health/live")


def test_client_with_a_certificate_from_the_ca_is_served(mtls_server):
    token = mtls_server.token(role="HCP", gln="7601000000002", name="Dr. Luc Favre")
    with httpx.Client(verify=mtls_server.client_context(with_certificate=True), timeout=5) as client:
        response = client.get(f"{mtls_server.base}/fhir/DocumentReference",
                              params={"patient.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"},
                              headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert response.json()["resourceType"] == "Bundle"


def test_a_role_that_needs_mtls_is_refused_with_a_token_alone(optional_mtls_server, tmp_path):
    server = optional_mtls_server
    token = server.token(role="TCU", user_id="infomed-migration", principal_gln="7601000000002", name="Migration")
    other_cert, other_key = issue_client_certificate(server.pki, "infomed-migration", tmp_path)
    with_cert = server.client_context(with_certificate=False)
    with_cert.load_cert_chain(str(other_cert), str(other_key))
    body = b"{}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}

    with httpx.Client(verify=server.client_context(with_certificate=False), timeout=5) as client:
        token_only = client.post(f"{server.base}/fhir", content=body, headers=headers)
    with httpx.Client(verify=with_cert, timeout=5) as client:
        both = client.post(f"{server.base}/fhir", content=body, headers=headers)

    assert token_only.status_code == 403
    assert "client certificate" in token_only.json()["issue"][0]["diagnostics"]
    assert both.status_code == 400  # past authentication: the empty object is not a Bundle


def test_tokens_and_patient_ids_never_reach_the_log(optional_mtls_server):
    server = optional_mtls_server
    good = server.token(role="HCP", gln="7601000000002", name="Dr. Luc Favre")
    expired = server.token(role="HCP", gln="7601000000002", name="Dr. Luc Favre", ttl=1, now=time.time() - 3600)
    with httpx.Client(verify=server.client_context(with_certificate=False), timeout=5) as client:
        for token in (good, expired, good[:-5] + "AAAAA"):
            client.get(f"{server.base}/fhir/DocumentReference",
                       params={"patient.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"},
                       headers={"Authorization": f"Bearer {token}"})

    log = server.stop()

    assert "GET /fhir/DocumentReference 200" in log
    assert "GET /fhir/DocumentReference 401" in log
    assert "token refused: token expired" in log
    for secret in (good, expired, good.split(".")[1], expired.split(".")[2], SPID):
        assert secret not in log
