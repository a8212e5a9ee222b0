"""The stub's HTTPS server: the standard library's threading HTTP server behind TLS that requires a
client certificate, with raw control of the socket (a reset is a TCP RST, a lost answer is a
request processed and then a connection dropped)."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .scenarios import Scenario, Scenarios
from .soap import Answer, Refusal, soap_fault


@dataclass
class RecordedRequest:
    endpoint: str
    path: str
    headers: dict[str, str]
    body: bytes | None      # None once past the stub's keep limit
    status: int | None      # the HTTP status answered, None when no answer was sent
    outcome: str            # "stored", a refusal's reason, or the scenario applied
    at: float = field(default_factory=time.time)


Handler = Callable[[str | None, bytes], tuple[Answer, str]]


class StubHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, context: ssl.SSLContext, routes: dict[str, tuple[str, Handler]], scenarios: Scenarios,
                 record: Callable[[RecordedRequest], None]):
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.context, self.routes, self.scenarios, self.record = context, routes, scenarios, record
        self.handshake_failures: list[str] = []
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def finish_request(self, request, client_address) -> None:
        try:
            request.settimeout(30)
            # Without it, headers and body written apart meet the client's delayed ACK: 40 ms an answer.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:  # no or an untrusted client certificate: as the platform
            self.handshake_failures.append(str(error))
            return
        with self._connections_lock:
            self._connections.add(tls)
        try:
            _RequestHandler(tls, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(tls)
            try:
                tls.close()
            except OSError:
                pass

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StubHttpServer

    def log_message(self, format, *args) -> None:  # quiet: the tests read the recorded requests
        pass

    def do_GET(self) -> None:
        self._send(Answer(405, "text/plain", b"POST only"))

    def do_POST(self) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0])
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send(Answer(411, "text/plain", b"Content-Length required"))
            return
        body = self.rfile.read(int(length))
        headers = {k: v for k, v in self.headers.items()}
        if route is None:
            self.server.record(RecordedRequest("unknown", self.path, headers, body, 404, "no such service"))
            self._send(Answer(404, "text/plain", b"no such service"))
            return
        endpoint, handler = route
        scenario = self.server.scenarios.take(endpoint)
        status, outcome, reply = self._serve(handler, headers.get("Content-Type"), body, scenario)
        # Recorded before the answer leaves: a client that has its answer finds the request counted.
        self.server.record(RecordedRequest(endpoint, self.path, headers, body, status, outcome))
        reply()

    def _serve(self, handler: Handler, content_type, body, scenario: Scenario | None):
        """(HTTP status or None, outcome, the action that answers)."""
        if scenario is not None and scenario.kind == "slow":
            time.sleep(scenario.delay)
        elif scenario is not None and scenario.kind == "http_error":
            answer = Answer(scenario.status, "text/html", b"<html><body>Internal Server Error</body></html>")
            return scenario.status, f"scenario http_error {scenario.status}", lambda: self._send(answer)
        elif scenario is not None and scenario.kind == "soap_fault":
            fault = soap_fault(scenario.text)
            return fault.answer.status, "scenario soap_fault", lambda: self._send(fault.answer)
        elif scenario is not None and scenario.kind == "reset" and not scenario.process:
            fault = soap_fault(scenario.text)
            return None, "scenario reset (not processed)", lambda: self._reset_mid_answer(fault.answer)
        try:
            answer, outcome = handler(content_type, body)
        except Refusal as refusal:
            answer, outcome = refusal.answer, f"refused: {refusal.reason}"
        if scenario is not None and scenario.kind == "lost":
            return None, f"scenario lost after processing ({outcome})", self._reset
        if scenario is not None and scenario.kind == "reset":
            return None, f"scenario reset mid-answer after processing ({outcome})", \
                lambda: self._reset_mid_answer(answer)
        return answer.status, outcome, lambda: self._send(answer)

    def _send(self, answer: Answer) -> None:
        """Status line, headers and body in one write (one TLS record run, no Nagle wait between)."""
        self.send_response_only(answer.status)
        self.send_header("Date", self.date_time_string())
        if answer.content_type:
            self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self._headers_buffer.append(b"\r\n")
        self.wfile.write(b"".join(self._headers_buffer) + answer.body)
        self._headers_buffer = []

    def _reset_mid_answer(self, answer: Answer) -> None:
        head = (f"HTTP/1.1 {answer.status} X\r\nContent-Type: {answer.content_type}\r\n"
                f"Content-Length: {len(answer.body)}\r\n\r\n").encode()
        self.wfile.write(head + answer.body[:len(answer.body) // 2])
        self._reset()

    def _reset(self) -> None:
        """A TCP RST: linger 0, then close without TLS close_notify."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
