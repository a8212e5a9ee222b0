"""The community's audit record repository (ITI-20): syslog over TLS with a client certificate,
RFC 5425 octet-counting framing ("MSG-LEN SP SYSLOG-MSG"), each message checked by
`audit_message.py` and kept: accepted ones in `messages`, the others in `rejected` with why.
A framing error closes the connection (RFC 5425 4.3.1); a well-framed bad message is rejected alone.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field

from .audit_message import AuditCheck, SyslogMessage, check_audit_message, parse_syslog

MAX_FRAME = 1 << 20


@dataclass
class ReceivedAudit:
    raw: bytes
    syslog: SyslogMessage | None
    check: AuditCheck | None
    problems: list[str]
    peer: str
    at: float = field(default_factory=time.time)


class AuditRepository(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext, *, strict: bool = True, port: int = 0):
        super().__init__(("127.0.0.1", port), _FrameReader)
        self.context, self.strict = context, strict
        self.messages: list[ReceivedAudit] = []
        self.rejected: list[ReceivedAudit] = []
        self.handshake_failures: list[str] = []
        self.lock = threading.Condition()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def finish_request(self, request, client_address) -> None:
        try:
            request.settimeout(30)
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            self.handshake_failures.append(str(error))
            return
        try:
            _FrameReader(tls, client_address, self)
        finally:
            tls.close()

    def keep(self, received: ReceivedAudit) -> None:
        with self.lock:
            (self.rejected if received.problems else self.messages).append(received)
            self.lock.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedAudit]:
        """Block until `count` messages (accepted or rejected) arrived; the accepted ones."""
        with self.lock:
            self.lock.wait_for(lambda: len(self.messages) + len(self.rejected) >= count, timeout)
            return list(self.messages)


class _FrameReader(socketserver.StreamRequestHandler):
    server: AuditRepository

    def handle(self) -> None:
        peer = str(self.request.getpeercert().get("subject", "")) if hasattr(self.request, "getpeercert") else ""
        while True:
            length = b""
            while True:
                byte = self.rfile.read(1)
                if not byte:
                    if length:
                        self._framing_error(length, "connection closed inside MSG-LEN", peer)
                    return
                if byte == b" ":
                    break
                length += byte
                if not byte.isdigit() or len(length) > 7:
                    self._framing_error(length, "MSG-LEN must be digits followed by one space", peer)
                    return
            if not length or length.startswith(b"0") or int(length) > MAX_FRAME:
                self._framing_error(length, f"MSG-LEN {length!r} out of range", peer)
                return
            frame = self.rfile.read(int(length))
            if len(frame) != int(length):
                self._framing_error(frame, "connection closed inside SYSLOG-MSG", peer)
                return
            self.server.keep(_received(frame, peer, self.server.strict))

    def _framing_error(self, raw: bytes, why: str, peer: str) -> None:
        self.server.keep(ReceivedAudit(raw, None, None, [f"framing: {why}"], peer))
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _received(frame: bytes, peer: str, strict: bool) -> ReceivedAudit:
    try:
        syslog = parse_syslog(frame)
    except ValueError as error:
        return ReceivedAudit(frame, None, None, [f"syslog: {error}"], peer)
    check = check_audit_message(syslog.message, strict=strict)
    return ReceivedAudit(frame, syslog, check, list(check.problems), peer)
