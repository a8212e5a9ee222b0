"""`epr-gateway serve` runs HTTPS and MLLP in one process: a flood of idle MLLP connections is refused at
the MLLP door below the process's file descriptors (RLIMIT_NOFILE), and HTTPS goes on answering. The
review's case: 1,100 idle connections used up the descriptors and took HTTPS down, with nothing logged."""

from __future__ import annotations

import resource
import selectors
import socket
import ssl
import subprocess
import sys
import time

import httpx

from functional.mllp_helpers import mdm
from gateway.mllp.framing import END, START
from gateway.pki import ensure_dev_pki

DESCRIPTORS = 256  # the server's RLIMIT_NOFILE: MLLP may take half


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def few_descriptors() -> None:  # in the server's process, before it starts
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))


def test_a_flood_of_idle_mllp_connections_is_refused_at_the_limit_and_https_goes_on(tmp_path):
    data_dir, port, mllp_port = tmp_path / "data", free_port(), free_port()
    pki = ensure_dev_pki(data_dir / "pki")
    base = f"https://127.0.0.1:{port}"
    environment = {"EPR_DATA_DIR": str(data_dir), "EPR_PORT": str(port), "EPR_MLLP_PORT": str(mllp_port),
                   "EPR_DEMO_DATA": "false", "EPR_AUDIENCE": f"{base}/fhir", "PATH": "/usr/bin:/bin"}
    log = data_dir / "server.log"
    server = subprocess.Popen([sys.executable, "-c", "from gateway.cli import app; app()", "serve"], env=environment,
                              stdout=log.open("wb"), stderr=subprocess.STDOUT, preexec_fn=few_descriptors)
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    flood: list[socket.socket] = []
    try:
        wait_until_ready(server, base, context, log)
        for _ in range(400):
            flood.append(socket.create_connection(("127.0.0.1", mllp_port), timeout=10))
        closed = closed_by_server(flood, within=5)
        https = [ready(base, context) for _ in range(20)]  # each on a new connection
        kept = [sock for sock in flood if sock not in closed]
        kept[0].sendall(START + mdm(control_id="FD-1", unique_id="urn:oid:2.25.7601").encode() + END)
        answer = kept[0].recv(65536)
    finally:
        for sock in flood:
            sock.close()
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()

    assert (len(closed), len(flood) - len(closed)) == (400 - DESCRIPTORS // 2, DESCRIPTORS // 2)
    assert https == [200] * 20
    assert b"MSA|" in answer  # a connection within the limit is served
    assert "MLLP connections limited to 128 (EPR_MLLP_MAX_CONNECTIONS=256)" in text
    assert "MLLP refused from 127.0.0.1: MLLP connection over the limit of 128" in text


def ready(base: str, context: ssl.SSLContext) -> int:
    with httpx.Client(verify=context, timeout=10) as client:
        return client.get(f"{base}/health/ready").status_code


def wait_until_ready(server: subprocess.Popen, base: str, context: ssl.SSLContext, log) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if ready(base, context) == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
        assert server.poll() is None, log.read_text()
    raise AssertionError("the server did not become ready: " + log.read_text())


def closed_by_server(sockets: list[socket.socket], *, within: float) -> list[socket.socket]:
    """The sockets the server closed within `within` seconds (EOF or reset)."""
    closed: list[socket.socket] = []
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(1024)
                except ConnectionError:
                    data = b""
                if data == b"":
                    closed.append(key.fileobj)
                    selector.unregister(key.fileobj)
    return closed
