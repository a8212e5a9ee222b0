"""One HTTPS client per community: its CA only, the gateway's client certificate (mutual TLS),
timeouts, and every failure that says nothing about the message sorted into one exception.

Why one class of failure: a refused connection, a TLS handshake the community refuses, a reset in the
middle of the answer, a timeout or an answer larger than any SOAP answer can be all leave the same
question open (did the community take the message?), and the outbox's answer to all of them is the
same: try again later with the same ids. `TransportError.text` says which it was, for the operator.
The client is injectable (`Poster`): unit tests answer with recorded messages without a server.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from adapters.community.config import TlsFiles

MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a RegistryResponse, an RSTR or a PIX answer is a few KB


class TransportError(Exception):
    """The exchange failed below SOAP: nothing is known about what the community did with it."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    content_type: str
    body: bytes
    www_authenticate: str = ""  # a 401's challenge (the MHD recipient says why it refused the token)


class Poster(Protocol):
    """`headers`: more request headers (the MHD transport's bearer token, Accept, traceparent)."""

    def post(self, url: str, *, body: bytes, content_type: str, timeout: float,
             headers: Mapping[str, str] | None = None) -> HttpAnswer: ...


def client_context(tls: TlsFiles) -> ssl.SSLContext:
    """TLS 1.2+, the community's CA as the only trust anchor, the gateway's certificate presented."""
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    return context


class HttpsTransport:
    """`Poster` over httpx with mutual TLS; keeps its connections between calls.

    One httpx client per calling thread (the deliverer's senders are a fixed set of threads), all with
    the same TLS context: a client shared by the senders made them take turns on its connection pool's
    locks for every request, a lock hand-over between threads each time (bench/README.md)."""

    def __init__(self, tls: TlsFiles, *, connect_timeout: float = 10.0):
        self._context = client_context(tls)
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._clients: list[tuple[threading.Thread, httpx.Client]] = []  # every thread's, for close()
        self._lock = threading.Lock()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(verify=self._context, trust_env=False, follow_redirects=False,
                                  timeout=httpx.Timeout(30.0, connect=self._connect_timeout))
            with self._lock:  # the clients of threads that ended (a deliverer stopped and started again) closed
                ended = [c for thread, c in self._clients if not thread.is_alive()]
                self._clients = [(t, c) for t, c in self._clients if t.is_alive()]
                self._clients.append((threading.current_thread(), client))
            for old in ended:
                old.close()
            self._local.client = client
        return client

    def post(self, url: str, *, body: bytes, content_type: str, timeout: float,
             headers: Mapping[str, str] | None = None) -> HttpAnswer:
        sent = {**(headers or {}), "Content-Type": content_type}
        try:
            with self._client().stream("POST", url, content=body, headers=sent,
                                     timeout=httpx.Timeout(timeout, connect=min(timeout, self._connect_timeout))
                                     ) as response:
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise TransportError(f"the answer from {url} exceeds {MAX_ANSWER_BYTES} bytes")
                    chunks.append(chunk)
                return HttpAnswer(response.status_code, response.headers.get("content-type", ""), b"".join(chunks),
                                  response.headers.get("www-authenticate", ""))
        except httpx.TimeoutException as exc:
            raise TransportError(f"{url}: no answer in time ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransportError(f"{url}: {type(exc).__name__}: {_reason(exc)}") from None

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        self._local = threading.local()
        for _, client in clients:
            client.close()


def _reason(exc: Exception) -> str:
    """The innermost cause's words (an SSL alert, a reset), not the wrapper's."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc) or type(exc).__name__
