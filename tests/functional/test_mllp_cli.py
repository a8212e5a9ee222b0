"""`epr-gateway serve` listens for MLLP beside HTTPS, `epr-gateway bridge` alone; both on the embedded
default, whose DEVELOPMENT senders file lets the demo hospital feed the demo patient's record."""

import os
import socket
import ssl
import subprocess
import sys
import time

import httpx
import pytest

from functional.mllp_helpers import MllpClient, ack_fields, mdm
from functional.test_tls_server import Server, free_port
from gateway.demo import DEMO_SPID
from gateway.pki import ensure_dev_pki

LOAD_DEMO = ("from gateway.first_start import prepare\nfrom gateway.settings import Settings\n"
             "from gateway.wiring import build_runtime\nfrom gateway.demo import load_demo_data\n"
             "s = build_runtime(prepare(Settings()).settings).services\n"
             "load_demo_data(documents=s.exchange, identities=s.identities, policies=s.policies, base_url='https://127.0.0.1/fhir')")


def demo_document(control_id: str) -> bytes:
    return mdm(control_id=control_id, unique_id=f"urn:oid:2.25.8{control_id[-1]}", facility="DEMO-HOSPITAL",
               local_id="DEMO-0001", family="Demo", given="Valérie", birth="19700412", sex="F").encode()


def wait_listening(port: int, process, log) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("not listening: " + log.read_text())


def test_serve_listens_for_mllp_beside_https(tmp_path):
    mllp_port = free_port()
    server = Server(tmp_path / "data", free_port(), EPR_MLLP_PORT=str(mllp_port), EPR_DEMO_DATA="true")
    try:
        wait_listening(mllp_port, server.process, server.log)
        client = MllpClient(("127.0.0.1", mllp_port))
        ack = client.send(demo_document("S1"))
        client.close()
        token = server.token(role="HCP", gln="7601000000002", name="Dr. Demo Favre")
        with httpx.Client(verify=server.client_context(with_certificate=True), timeout=10) as http:
            found = http.get(f"{server.base}/fhir/DocumentReference",
                             params={"patient.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{DEMO_SPID}"},
                             headers={"Authorization": f"Bearer {token}"}).json()
    finally:
        log = server.stop()
    assert ack_fields(ack)["MSA"][1:3] == ["AA", "S1"]
    assert "urn:oid:2.25.81" in [e["resource"]["masterIdentifier"]["value"] for e in found["entry"]]
    assert "MLLP listening on 127.0.0.1" in log


def test_serve_keeps_serving_https_when_the_mllp_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = Server(tmp_path / "data", free_port(), EPR_MLLP_PORT=str(taken.getsockname()[1]))
        log = server.stop()
    assert "MLLP listener NOT started" in log


@pytest.mark.parametrize("tls", [False, True])
def test_bridge_alone_answers_over_mllp(tmp_path, tls):
    port = free_port()
    log = tmp_path / "bridge.log"
    env = {"EPR_DATA_DIR": str(tmp_path / "data"), "EPR_MLLP_PORT": str(port), "PATH": "/usr/bin:/bin",
           "EPR_MLLP_TLS": "true" if tls else "false", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-c", LOAD_DEMO], env=env, check=True, timeout=120)  # as `serve` would
    process = subprocess.Popen([sys.executable, "-c", "from gateway.cli import app; app()", "bridge"], env=env,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_listening(port, process, log)
        ca = ensure_dev_pki(tmp_path / "data" / "pki").ca_cert
        context = ssl.create_default_context(cafile=str(ca)) if tls else None
        client = MllpClient(("127.0.0.1", port), context=context)
        ack = client.send(demo_document("B1"))
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert ack_fields(ack)["MSA"][1:3] == ["AA", "B1"]
    assert ("with TLS" in log.read_text()) is tls
