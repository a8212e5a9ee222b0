"""Syslog over TLS as IHE ATNA ITI-20 sends it (RFC 5424 messages, RFC 5425 framing), in one place.

Used by the ledger's SIEM shipping (`audit/shipping.py`) and by the ATNA messages the gateway sends
to a community's audit record repository (`adapters/community/atna.py`): the framing, the header
tokens, the client TLS context and the check that the receiver took a batch are the same for both.
"""

from __future__ import annotations

import select
import socket
import ssl

AUTHPRIV = 10  # syslog facility "security/authorization" (IHE ITI-20)


def frame(message: str | bytes) -> bytes:
    """RFC 5425 octet counting: the message's length in bytes, a space, the message."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return str(len(data)).encode() + b" " + data


def syslog_token(value: str) -> str:
    """RFC 5424 header fields are printable US-ASCII without spaces, at most 255 characters."""
    cleaned = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:255]
    return cleaned or "-"


def client_ssl_context(ca_file: str | None, client_cert: str | None = None,
                       client_key: str | None = None) -> ssl.SSLContext:
    """TLS 1.2+ to the receiver, its certificate verified (ATNA node authentication: with a client
    certificate when one is configured)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


def readable_within(connection: socket.socket, seconds: float) -> bool:
    """Whether `connection` becomes readable (data, an alert, a close) within `seconds`. poll, not
    select: select() cannot watch a descriptor numbered 1024 or more (ValueError), and a gateway that
    holds many connections, or a long test session, hands this connection such a number."""
    poller = select.poll()
    poller.register(connection, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(max(0.0, seconds) * 1000))


def confirm_taken(connection: ssl.SSLSocket, *, wait_seconds: float, timeout_seconds: float) -> None:
    """RFC 5425 has no acknowledgement and `sendall` returning only means the bytes are in our
    kernel. A receiver never writes back, so anything readable soon after is a refusal (a TLS
    alert, e.g. our client certificate refused after a TLS 1.3 handshake) or a close: raise
    ConnectionError then. A loss later than this window cannot be seen over syslog."""
    if not readable_within(connection, wait_seconds):
        return
    connection.settimeout(wait_seconds)
    try:
        data = connection.recv(1)
    except TimeoutError:
        return  # TLS 1.3 session tickets made it readable: no application data, no refusal
    except (ssl.SSLError, OSError) as exc:
        raise ConnectionError(f"the receiver refused the messages: {type(exc).__name__}") from exc
    finally:
        connection.settimeout(timeout_seconds)
    if not data:
        raise ConnectionError("the receiver closed the connection")


class SyslogConnection:
    """One TLS connection to a syslog receiver: opened when first needed, checked before each send
    (a receiver that closed it while idle is reached again, not written into), dropped on any failure.
    `send` raises OSError/ssl.SSLError (ConnectionError for a refusal) when the receiver did not take
    the bytes; the caller keeps them."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, *, timeout_seconds: float):
        self._host, self._port = host, port
        self._context = context
        self._timeout = timeout_seconds
        self._socket: ssl.SSLSocket | None = None

    def send(self, data: bytes, *, confirm_seconds: float) -> None:
        try:
            connection = self._connection()
            connection.sendall(data)
            confirm_taken(connection, wait_seconds=confirm_seconds, timeout_seconds=self._timeout)
        except (OSError, ssl.SSLError):
            self.close()
            raise

    def _connection(self) -> ssl.SSLSocket:
        if self._socket is not None and readable_within(self._socket, 0):
            try:  # readable while idle: the receiver closed the connection (or sent a TLS 1.3 ticket)
                confirm_taken(self._socket, wait_seconds=0.01, timeout_seconds=self._timeout)
            except ConnectionError:
                self.close()
        if self._socket is None:
            raw = socket.create_connection((self._host, self._port), timeout=self._timeout)
            try:
                self._socket = self._context.wrap_socket(raw, server_hostname=self._host)
            except (OSError, ssl.SSLError):
                raw.close()
                raise
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            except OSError:
                pass
            self._socket = None
