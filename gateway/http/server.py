"""Runs the app under uvicorn with TLS 1.2+ and, when configured, client certificates (mutual TLS).

uvicorn does not put the peer certificate in the ASGI scope, so the HTTP protocol is subclassed to
copy the verified client certificate's subject into the connection's state (`request.state`), and its
common name apart (`tls_client_common_name`: the subject string cannot be split back safely when a
value holds a comma; the development token endpoint binds a client to its certificate by CN).
"""

from __future__ import annotations

import os
import socket
import ssl

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.supervisors import Multiprocess

from gateway.log_format import LOG_CONFIG
from gateway.pki import server_ssl_context
from gateway.settings import Settings


class ClientCertificateProtocol(AutoHTTPProtocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        ssl_object = transport.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert() if ssl_object is not None else None
        if certificate:
            attributes = [(k, v) for rdn in certificate.get("subject", ()) for k, v in rdn]
            subject = ",".join(f"{k}={v}" for k, v in attributes)
            common_names = [v for k, v in attributes if k == "commonName"]
            self.app_state = {**self.app_state, "tls_client_subject": subject,
                              "tls_client_common_name": common_names[0] if len(common_names) == 1 else None}
        super().connection_made(transport)


def ssl_context_for(settings: Settings) -> ssl.SSLContext:
    return server_ssl_context(settings.tls_cert, settings.tls_key, settings.client_ca, settings.require_client_cert)


def _ssl_factory(_config, _default) -> ssl.SSLContext:
    # Module-level so that worker processes (spawned) can rebuild it from the EPR_* environment.
    return ssl_context_for(Settings())


def bind_socket(settings: Settings) -> socket.socket:
    """The listening socket, bound before anything is announced; OSError (e.g. the port is taken)
    goes to the caller, which says so in one line instead of uvicorn's log and exit."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((settings.host, settings.port))
        listening.listen(2048)
    except OSError:
        listening.close()
        raise
    listening.set_inheritable(True)  # worker processes serve the same socket
    return listening


def run(settings: Settings, *, workers: int = 1, sock: socket.socket | None = None) -> None:
    """Serve until stopped. Worker processes rebuild settings from the environment, so the caller
    exports the prepared paths (`export_settings`) first. `sock`: already bound (`bind_socket`)."""
    export_settings(settings)
    options = dict(
        factory=True, workers=workers, host=settings.host, port=settings.port,
        http=ClientCertificateProtocol, ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key),
        ssl_context_factory=_ssl_factory, log_level="info", access_log=False, server_header=False, proxy_headers=False,
        timeout_keep_alive=30, log_config=LOG_CONFIG,
    )
    if sock is None:
        uvicorn.run("gateway.asgi:create", **options)
        return
    config = uvicorn.Config("gateway.asgi:create", **options)
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass


def export_settings(settings: Settings) -> None:
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"EPR_{name.upper()}"] = str(value)
