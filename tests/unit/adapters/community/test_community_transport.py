"""The HTTPS client over real TLS on loopback: mutual TLS both ways, the bytes as given, and every
failure below SOAP (refused, untrusted, timeout, reset mid-answer, an endless answer) one TransportError
that says which it was."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters.community.transport import MAX_ANSWER_BYTES, HttpAnswer, HttpsTransport, TransportError
from unit.adapters.community.community_fixtures import community, make_pki


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: list = []
    connections: list = []  # the client's (address, port) of each request

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Handler.connections.append(self.client_address)
        peer = dict(x[0] for x in self.connection.getpeercert()["subject"])["commonName"]
        Handler.received.append((self.path, self.headers["Content-Type"], body, peer))
        if self.path == "/slow":
            time.sleep(1.5)
        if self.path == "/reset":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 1000\r\n\r\n<soap")
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(self.connection.detach())  # closed now (the handler's files hold the socket otherwise): a RST
            self.close_connection = True
            return
        if self.path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/soap+xml")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(MAX_ANSWER_BYTES // len(chunk) + 8):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            return
        status = 500 if self.path == "/fault" else 200
        answer = b"<answer/>"
        self.send_response(status)
        self.send_header("Content-Type", 'multipart/related; boundary="b"; type="application/xop+xml"')
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class Server:
    def __init__(self, pki, client_ca):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # the reset's own aftermath, and refused handshakes
        self.url = f"https://localhost:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(pki):
    running = Server(pki, pki.ca_cert)
    yield running
    running.close()


@pytest.fixture
def transport(pki):
    client = HttpsTransport(community(pki).tls, connect_timeout=2)
    yield client
    client.close()


def test_the_bytes_and_content_type_as_given_with_the_gateways_certificate(server, transport):
    Handler.received.clear()
    body = bytes(range(256)) * 100 + b"\r\n--boundary\r\n"
    answer = transport.post(f"{server.url}/Repository", body=body, content_type='multipart/related; boundary="x"',
                            timeout=5)
    assert answer == HttpAnswer(200, 'multipart/related; boundary="b"; type="application/xop+xml"', b"<answer/>")
    assert Handler.received == [("/Repository", 'multipart/related; boundary="x"', body, "epr-gateway source")]


def test_an_http_error_is_an_answer_not_a_transport_error(server, transport):
    assert transport.post(f"{server.url}/fault", body=b"x", content_type="text/plain", timeout=5).status == 500


def failure(transport, url: str, timeout: float = 5) -> str:
    with pytest.raises(TransportError) as caught:
        transport.post(url, body=b"<x/>", content_type="application/soap+xml", timeout=timeout)
    return caught.value.text


def test_no_answer_in_time(server, transport):
    assert failure(transport, f"{server.url}/slow", timeout=0.3) == f"{server.url}/slow: no answer in time (ReadTimeout)"


def test_a_reset_in_the_middle_of_the_answer(server, transport):
    text = failure(transport, f"{server.url}/reset")
    # Which words depends on how much of the answer the client had read when the reset came.
    assert text in (f"{server.url}/reset: RemoteProtocolError: peer closed connection without sending complete message "
                    "body (received 5 bytes, expected 1000)",
                    f"{server.url}/reset: RemoteProtocolError: Server disconnected without sending a response.",
                    f"{server.url}/reset: ReadError: [Errno 104] Connection reset by peer"), text


def test_an_answer_larger_than_any_soap_answer(server, transport):
    assert failure(transport, f"{server.url}/endless") == f"the answer from {server.url}/endless exceeds " \
                                                           f"{MAX_ANSWER_BYTES} bytes"


def test_nobody_listening(transport):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    assert failure(transport, f"https://localhost:{port}/x").startswith(f"https://localhost:{port}/x: ConnectError: ")


def test_a_server_the_communitys_ca_did_not_certify(tmp_path, server):
    stranger = make_pki(tmp_path / "stranger")  # the gateway trusts only the community's CA
    client = HttpsTransport(community(stranger).tls)
    try:
        assert "CERTIFICATE_VERIFY_FAILED" in failure(client, f"{server.url}/x")
    finally:
        client.close()


def test_a_server_that_does_not_trust_the_gateways_certificate(pki, tmp_path, transport):
    other = make_pki(tmp_path / "other")
    refusing = Server(pki, other.ca_cert)
    try:
        assert failure(transport, f"{refusing.url}/x").startswith(f"{refusing.url}/x: ")
    finally:
        refusing.close()


def test_each_thread_keeps_its_own_connection_and_an_ended_threads_is_closed(server, transport):
    Handler.connections.clear()
    statuses = []

    def three_posts():
        for _ in range(3):
            statuses.append(transport.post(f"{server.url}/Repository", body=b"<x/>", content_type="text/xml",
                                           timeout=5).status)

    senders = [threading.Thread(target=three_posts) for _ in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert statuses == [200] * 6
    assert len(set(Handler.connections)) == 2  # three requests on each thread's one kept connection
    three_posts()  # this thread's client is made: the two ended threads' clients are closed with it
    assert statuses == [200] * 9 and len(set(Handler.connections)) == 3
    assert [thread for thread, _ in transport._clients] == [threading.current_thread()]
