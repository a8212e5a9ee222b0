"""The facade as the deliverer will build it (its own HTTPS transport from the configuration) against
the recorded answers served over real mutual TLS on loopback, and its audit messages sent to a syslog
TLS listener: the whole way, without an injected poster."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lxml import etree

from adapters.community.source import XdsDocumentSource
from unit.adapters.community.community_fixtures import community, make_pki
from unit.adapters.community.test_community_atna import Listener
from unit.adapters.community.test_document_source import RecordedCommunity, request


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


class Served:
    """RecordedCommunity behind HTTPS that requires the gateway's client certificate."""

    def __init__(self, pki):
        recorded: list[RecordedCommunity] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = recorded[0].post(f"{served.url}{self.path}", body=body,
                                          content_type=self.headers["Content-Type"], timeout=5)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

        served = self
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca_cert)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.url = f"https://localhost:{self.httpd.server_address[1]}"
        self.recorded = recorded
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_delivered_over_mutual_tls_and_audited_to_the_repository(pki):
    served, listener = Served(pki), Listener(pki, pki.ca_cert)
    now = dt.datetime.now(dt.UTC)
    configured = community(pki, base_url=served.url, atna=f"localhost:{listener.port}")
    served.recorded.append(RecordedCommunity(configured, lambda: now))
    source = XdsDocumentSource(configured, clock=lambda: now)
    try:
        answer = source.provide(request())
        assert answer.kind == "delivered"
        assert [url for url, _, _ in served.recorded[0].calls] == [
            configured.iti45_pix_url, configured.iti40_sts_url, configured.iti41_url]
        source.send_audit(list(answer.audit))
        frames = listener.wait_for(3)
    finally:
        source.close()
        served.close()
        listener.close()
    events = [etree.fromstring(frame.partition(b" - ")[2]).find("EventIdentification/EventTypeCode").get("csd-code")
              for frame in frames]
    assert events == ["ITI-45", "ITI-40", "ITI-41"]
    assert listener.peers == ["epr-gateway source"]
