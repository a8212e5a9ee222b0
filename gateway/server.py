"""Runs the app under uvicorn with TLS 1.2+ and, when configured, client certificates (mutual TLS).

uvicorn does not put the peer certificate in the ASGI scope, so the HTTP protocol is subclassed to
copy the verified client certificate's subject into the connection's state (`request.state`).
"""

from __future__ import annotations

import os
import ssl

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from gateway.log_format import LOG_CONFIG
from gateway.pki import server_ssl_context
from gateway.settings import Settings


class ClientCertificateProtocol(AutoHTTPProtocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        ssl_object = transport.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert() if ssl_object is not None else None
        if certificate:
            subject = ",".join(f"{k}={v}" for rdn in certificate.get("subject", ()) for k, v in rdn)
            self.app_state = {**self.app_state, "tls_client_subject": subject}
        super().connection_made(transport)


def ssl_context_for(settings: Settings) -> ssl.SSLContext:
    return server_ssl_context(settings.tls_cert, settings.tls_key, settings.client_ca, settings.require_client_cert)


def _ssl_factory(_config, _default) -> ssl.SSLContext:
    # Module-level so that worker processes (spawned) can rebuild it from the EPR_* environment.
    return ssl_context_for(Settings())


def run(settings: Settings, *, workers: int = 1) -> None:
    """Serve until stopped. Worker processes rebuild settings from the environment, so the caller
    exports the prepared paths (`export_settings`) first."""
    export_settings(settings)
    uvicorn.run(
        "gateway.asgi:create", factory=True, workers=workers, host=settings.host, port=settings.port,
        http=ClientCertificateProtocol, ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key),
        ssl_context_factory=_ssl_factory, log_level="info", access_log=False, server_header=False, proxy_headers=False,
        timeout_keep_alive=30, log_config=LOG_CONFIG,
    )


def export_settings(settings: Settings) -> None:
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"EPR_{name.upper()}"] = str(value)
